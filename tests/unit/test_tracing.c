/*
 * test_tracing.c — the tracer and its OTLP/HTTP exporter.
 *
 * Without a collector: sampling (ratio 0 and 1 exactly, 0.01 and 0.5 within
 * wide bounds over 100 000 draws, a parent's flag obeyed), ids (children keep
 * the trace, get a new span id and a parent link; ids survive a failing
 * random source), attributes and messages bounded at character boundaries,
 * the error status, a NULL tracer, the endpoint and headers-file checks, the
 * JSON encoding of odd strings and numbers.
 *
 * Against a real receiver (libmicrohttpd on 127.0.0.1, port chosen by the
 * kernel, its answers scripted per test): the request's shape parsed with
 * jansson, batches of at most TRACING_BATCH_SPANS, a 503 retried with the
 * same batch, Retry-After honoured, 400 and partialSuccess counted as
 * dropped, a closed port (100 000 spans end quickly and are counted as
 * dropped), a collector that never answers (stop is bounded), the headers
 * file's headers, configure switching the endpoint and turning tracing
 * off and on, stop flushing, and threads ending spans while it runs.
 * Every wait is bounded (WAIT_MS) and sized for a sanitizer build.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "strbuf.h"
#include "timeouts.h"
#include "tmpdir.h"
#include "tracing.h"
#include "tracing_int.h"

Suite *suite_tracing(void);

#define WAIT_MS 30000 /* any wait for the exporter: generous for TSan on 2 busy cores */
#define RECV_MAX_REQS 512
#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool is_hex(const char *s, size_t len)
{
    if (s == NULL || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return strspn(s, "0") != len;
}

static bool is_digits(const char *s)
{
    return s != NULL && s[0] != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* ---- a receiver: libmicrohttpd answering as a test scripts it -------------------- */

struct recv_req {
    char *body;
    size_t len;
    char content_type[64], user_agent[64], auth[128], scope[64];
    int64_t at_ms;
    int status;
    size_t spans;
};

struct receiver {
    struct MHD_Daemon *d;
    char url[96];
    pthread_mutex_t lock;
    int script[8]; /* the first answers, in order; then fallback */
    size_t n_script, next;
    int fallback;
    const char *retry_after; /* with 429 and 503 answers, when set */
    const char *answer;      /* body of 2xx answers */
    struct recv_req reqs[RECV_MAX_REQS];
    size_t n_reqs;
    size_t spans_ok; /* spans in requests answered 2xx */
};

struct upload {
    char *p;
    size_t len, cap;
};

static size_t count_spans(const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *spans = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0),
                                       "scopeSpans"),
                       0),
        "spans");
    size_t n = json_array_size(spans);
    json_decref(root);
    return n;
}

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t size)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, size, "%s", v != NULL ? v : "");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    struct receiver *r = cls;
    struct upload *u = *con_cls;
    (void)url;
    (void)method;
    (void)version;

    if (u == NULL) {
        *con_cls = calloc(1, sizeof(*u));
        return *con_cls != NULL ? MHD_YES : MHD_NO;
    }
    if (*size > 0) {
        if (u->len + *size + 1 > u->cap) {
            size_t cap = (u->len + *size + 1) * 2;
            char *p = realloc(u->p, cap);
            if (p == NULL)
                return MHD_NO;
            u->p = p;
            u->cap = cap;
        }
        memcpy(u->p + u->len, data, *size);
        u->len += *size;
        u->p[u->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    size_t spans = u->p != NULL ? count_spans(u->p, u->len) : 0;
    pthread_mutex_lock(&r->lock);
    int status = r->next < r->n_script ? r->script[r->next++] : r->fallback;
    if (r->n_reqs < RECV_MAX_REQS) {
        struct recv_req *q = &r->reqs[r->n_reqs++];
        q->body = u->p;
        q->len = u->len;
        u->p = NULL;
        copy_header(c, "Content-Type", q->content_type, sizeof(q->content_type));
        copy_header(c, "User-Agent", q->user_agent, sizeof(q->user_agent));
        copy_header(c, "Authorization", q->auth, sizeof(q->auth));
        copy_header(c, "X-Scope-OrgID", q->scope, sizeof(q->scope));
        q->at_ms = now_ms();
        q->status = status;
        q->spans = spans;
    }
    if (status >= 200 && status <= 299)
        r->spans_ok += spans;
    const char *answer = status >= 200 && status <= 299 && r->answer != NULL ? r->answer : "{}";
    const char *retry_after = r->retry_after;
    pthread_mutex_unlock(&r->lock);

    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(answer), (void *)answer, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (retry_after != NULL && (status == 429 || status == 503))
        MHD_add_response_header(resp, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    struct upload *u = *con_cls;
    (void)cls;
    (void)c;
    (void)code;
    if (u != NULL) {
        free(u->p);
        free(u);
        *con_cls = NULL;
    }
}

/* Starts r answering fallback (and script first). */
static void receiver_start(struct receiver *r, int fallback)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->fallback = fallback;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, r,
                            MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, r,
                            MHD_OPTION_END);
    ck_assert_ptr_nonnull(r->d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(r->d, MHD_DAEMON_INFO_BIND_PORT);
    ck_assert_ptr_nonnull(info);
    ck_assert_uint_ne(info->port, 0);
    snprintf(r->url, sizeof(r->url), "http://127.0.0.1:%u/v1/traces", (unsigned)info->port);
}

static void receiver_stop(struct receiver *r)
{
    MHD_stop_daemon(r->d);
    for (size_t i = 0; i < r->n_reqs; i++)
        free(r->reqs[i].body);
    pthread_mutex_destroy(&r->lock);
}

static size_t receiver_reqs(struct receiver *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n_reqs;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static size_t receiver_spans(struct receiver *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->spans_ok;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* A loopback port nothing listens on (bound, then closed). */
static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A listening socket that never accepts: connections complete, nothing answers. */
static int silent_listener(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* ---- helpers ------------------------------------------------------------------- */

static struct tracing *start_tracer(const char *endpoint, double ratio, const char *headers,
                                    struct metrics *m)
{
    struct tracing_options o = {
        .otlp_endpoint = endpoint, .sample_ratio = ratio, .headers_file = headers};
    struct tracing *t = NULL;
    ck_assert_int_eq(tracing_start(&o, m, &t), 0);
    ck_assert_ptr_nonnull(t);
    return t;
}

static struct tracing_stats stats(struct tracing *t)
{
    struct tracing_stats s;
    tracing_stats_get(t, &s);
    return s;
}

/* Waits until exported + dropped reaches n (or WAIT_MS). */
static void wait_settled(struct tracing *t, uint64_t n)
{
    int64_t until = now_ms() + WAIT_MS;
    struct tracing_stats s = stats(t);
    while (s.exported + s.dropped < n && now_ms() < until) {
        usleep(10000);
        s = stats(t);
    }
    if (s.exported + s.dropped < n)
        ck_abort_msg("after %d ms: exported %lu + dropped %lu < %lu", WAIT_MS,
                     (unsigned long)s.exported, (unsigned long)s.dropped, (unsigned long)n);
}

/* One ended span, a root of its own trace (sampled when the ratio says). */
static void end_one(struct tracing *t, const char *name)
{
    struct tracing_span s;
    tracing_span_begin(t, &s, NULL, name, TRACING_INTERNAL);
    tracing_span_attr_int(&s, "n", 1);
    tracing_span_end(t, &s);
}

static const char sampled_parent_tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
static const char unsampled_parent_tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

/* ---- sampling -------------------------------------------------------------------- */

static size_t sampled_of(double ratio, size_t n)
{
    struct tracing *t = start_tracer(NULL, ratio, NULL, NULL);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct tracing_span s;
        tracing_span_begin(t, &s, NULL, "root", TRACING_SERVER);
        k += s.ctx.flags & 1;
        ck_assert(!s.recording); /* no endpoint: nothing recorded, whatever the flag */
    }
    tracing_stop(t);
    return k;
}

START_TEST(test_sampling_exact_ends)
{
    ck_assert_uint_eq(sampled_of(0, 100000), 0);
    ck_assert_uint_eq(sampled_of(1, 100000), 100000);
}
END_TEST

/* Binomial: 0.01 of 100 000 is 1 000 ± 31 (σ), 0.5 is 50 000 ± 158; the
 * bounds are about ±10 σ, so only a broken generator fails them. */
START_TEST(test_sampling_ratios)
{
    size_t k = sampled_of(0.01, 100000);
    ck_assert_uint_ge(k, 700);
    ck_assert_uint_le(k, 1300);
    k = sampled_of(0.5, 100000);
    ck_assert_uint_ge(k, 48500);
    ck_assert_uint_le(k, 51500);
}
END_TEST

/* A parent's sampled flag wins over the ratio, both ways, and so does its
 * trace: the child carries it on. */
START_TEST(test_sampling_parent_obeyed)
{
    struct receiver r;
    receiver_start(&r, 200);
    struct trace_context yes, no;
    ck_assert_int_eq(trace_parse(sampled_parent_tp, &yes), 0);
    ck_assert_int_eq(trace_parse(unsampled_parent_tp, &no), 0);

    struct tracing *t = start_tracer(r.url, 0, NULL, NULL);
    struct tracing_span s;
    for (int i = 0; i < 1000; i++) {
        tracing_span_begin(t, &s, &yes, "child", TRACING_SERVER);
        ck_assert_int_eq(s.ctx.flags & 1, 1);
        ck_assert(s.recording);
    }
    tracing_stop(t);

    t = start_tracer(r.url, 1, NULL, NULL);
    for (int i = 0; i < 1000; i++) {
        tracing_span_begin(t, &s, &no, "child", TRACING_SERVER);
        ck_assert_int_eq(s.ctx.flags & 1, 0);
        ck_assert(!s.recording);
        tracing_span_end(t, &s);
    }
    ck_assert_uint_eq(stats(t).buffered, 0);
    tracing_stop(t);
    ck_assert_uint_eq(receiver_reqs(&r), 0);
    receiver_stop(&r);
}
END_TEST

/* ---- ids, attributes, status --------------------------------------------------- */

START_TEST(test_ids_child_and_root)
{
    struct tracing *t = start_tracer(NULL, 1, NULL, NULL);
    struct tracing_span root, child, grandchild;
    int64_t before = (int64_t)time(NULL) * 1000000000;

    tracing_span_begin(t, &root, NULL, "root", TRACING_SERVER);
    ck_assert(is_hex(root.ctx.trace_id, TRACE_ID_HEX_LEN));
    ck_assert(is_hex(root.ctx.span_id, SPAN_ID_HEX_LEN));
    ck_assert_str_eq(root.parent_span_id, "");
    ck_assert_int_eq(root.ctx.flags, 1);
    ck_assert_int_ge(root.start_unix_ns, before - 1000000000);
    ck_assert_int_le(root.start_unix_ns, before + 5 * (int64_t)1000000000);
    ck_assert_ptr_eq(root.name, "root");
    ck_assert_int_eq(root.kind, TRACING_SERVER);
    ck_assert_int_eq(root.status, TRACING_STATUS_UNSET);

    tracing_span_begin(t, &child, &root.ctx, "child", TRACING_CLIENT);
    ck_assert_str_eq(child.ctx.trace_id, root.ctx.trace_id);
    ck_assert_str_ne(child.ctx.span_id, root.ctx.span_id);
    ck_assert(is_hex(child.ctx.span_id, SPAN_ID_HEX_LEN));
    ck_assert_str_eq(child.parent_span_id, root.ctx.span_id);
    ck_assert_int_eq(child.ctx.flags, root.ctx.flags);

    tracing_span_begin(t, &grandchild, &child.ctx, "grandchild", TRACING_INTERNAL);
    ck_assert_str_eq(grandchild.ctx.trace_id, root.ctx.trace_id);
    ck_assert_str_eq(grandchild.parent_span_id, child.ctx.span_id);

    /* an incoming traceparent: its trace, its span as the parent */
    struct trace_context in;
    ck_assert_int_eq(trace_parse(sampled_parent_tp, &in), 0);
    tracing_span_begin(t, &child, &in, "server", TRACING_SERVER);
    ck_assert_str_eq(child.ctx.trace_id, in.trace_id);
    ck_assert_str_eq(child.parent_span_id, in.span_id);
    ck_assert_str_ne(child.ctx.span_id, in.span_id);

    /* a parent that is not a valid context starts a new trace */
    struct trace_context bad = {.trace_id = "", .span_id = "", .flags = 1};
    tracing_span_begin(t, &child, &bad, "server", TRACING_SERVER);
    ck_assert(is_hex(child.ctx.trace_id, TRACE_ID_HEX_LEN));
    ck_assert_str_eq(child.parent_span_id, "");

    tracing_span_end(t, &root);
    ck_assert_int_ge(root.end_unix_ns, root.start_unix_ns);
    tracing_stop(t);
}
END_TEST

START_TEST(test_ids_unique)
{
    enum { COUNT = 2000 };
    static char ids[COUNT][SPAN_ID_HEX_LEN + 1];
    struct tracing_span s;
    for (int i = 0; i < COUNT; i++) {
        tracing_span_begin(NULL, &s, NULL, "x", TRACING_INTERNAL);
        memcpy(ids[i], s.ctx.span_id, sizeof(ids[i]));
    }
    qsort(ids, COUNT, sizeof(ids[0]), (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < COUNT; i++)
        ck_assert_str_ne(ids[i - 1], ids[i]);
}
END_TEST

static int failing_source(void *buf, size_t n)
{
    memset(buf, 0, n);
    return -EIO;
}

static int zero_source(void *buf, size_t n)
{
    memset(buf, 0, n);
    return 0;
}

/* No random bytes (an error, or only zeros): ids from the clock and a
 * counter, still valid, non-zero and unique; sampling still works. */
START_TEST(test_ids_without_random_source)
{
    enum { COUNT = 1000 };
    static char ids[COUNT][SPAN_ID_HEX_LEN + 1];
    static char traces[COUNT][TRACE_ID_HEX_LEN + 1];
    int (*sources[])(void *, size_t) = {failing_source, zero_source};

    for (int k = 0; k < N(sources); k++) {
        tracing__set_random_source(sources[k]);
        struct tracing *t = start_tracer(NULL, 0.5, NULL, NULL);
        struct tracing_span s, c;
        size_t sampled = 0;
        for (int i = 0; i < COUNT; i++) {
            tracing_span_begin(t, &s, NULL, "x", TRACING_INTERNAL);
            ck_assert(is_hex(s.ctx.trace_id, TRACE_ID_HEX_LEN));
            ck_assert(is_hex(s.ctx.span_id, SPAN_ID_HEX_LEN));
            memcpy(ids[i], s.ctx.span_id, sizeof(ids[i]));
            memcpy(traces[i], s.ctx.trace_id, sizeof(traces[i]));
            sampled += s.ctx.flags & 1;
        }
        tracing_span_begin(t, &c, &s.ctx, "child", TRACING_INTERNAL);
        ck_assert_str_eq(c.ctx.trace_id, s.ctx.trace_id);
        ck_assert_str_ne(c.ctx.span_id, s.ctx.span_id);
        tracing_stop(t);
        tracing__set_random_source(NULL);
        qsort(ids, COUNT, sizeof(ids[0]), (int (*)(const void *, const void *))strcmp);
        qsort(traces, COUNT, sizeof(traces[0]), (int (*)(const void *, const void *))strcmp);
        for (int i = 1; i < COUNT; i++) {
            ck_assert_str_ne(ids[i - 1], ids[i]);
            ck_assert_str_ne(traces[i - 1], traces[i]);
        }
        ck_assert_uint_ge(sampled, 300);
        ck_assert_uint_le(sampled, 700);
    }
}
END_TEST

START_TEST(test_attrs_bounded)
{
    struct tracing_span s;
    char long_value[TRACING_ATTR_VALUE_MAX + 64];
    char key[TRACING_ATTRS_MAX + 4][16];

    tracing_span_begin(NULL, &s, NULL, "x", TRACING_INTERNAL);
    ck_assert_uint_eq(s.n_attrs, 0);
    /* TRACING_ATTR_VALUE_MAX - 1 ASCII bytes, then "é": cut before the é */
    memset(long_value, 'a', TRACING_ATTR_VALUE_MAX - 1);
    strcpy(long_value + TRACING_ATTR_VALUE_MAX - 1, "\xc3\xa9tail");
    tracing_span_attr_str(&s, "long", long_value);
    ck_assert_uint_eq(strlen(s.attrs[0].v.s), TRACING_ATTR_VALUE_MAX - 1);
    /* exactly at the bound: kept whole */
    memset(long_value, 'b', TRACING_ATTR_VALUE_MAX);
    long_value[TRACING_ATTR_VALUE_MAX] = '\0';
    tracing_span_attr_str(&s, "exact", long_value);
    ck_assert_uint_eq(strlen(s.attrs[1].v.s), TRACING_ATTR_VALUE_MAX);
    tracing_span_attr_int(&s, "int", -42);
    tracing_span_attr_double(&s, "double", 0.25);
    tracing_span_attr_str(&s, "null", NULL);
    tracing_span_attr_str(&s, NULL, "no key: ignored");
    ck_assert_uint_eq(s.n_attrs, 5);
    ck_assert_str_eq(s.attrs[4].v.s, "");
    for (int i = 0; i < TRACING_ATTRS_MAX + 4; i++) {
        snprintf(key[i], sizeof(key[i]), "k%u", (unsigned)i % 100);
        tracing_span_attr_int(&s, key[i], i);
    }
    ck_assert_uint_eq(s.n_attrs, TRACING_ATTRS_MAX);
    ck_assert_str_eq(s.attrs[0].key, "long");
    ck_assert_int_eq(s.attrs[2].type, TRACING_ATTR_INT);
    ck_assert_int_eq(s.attrs[2].v.i, -42);
    ck_assert_int_eq(s.attrs[3].type, TRACING_ATTR_DOUBLE);
    ck_assert_double_eq(s.attrs[3].v.d, 0.25);
    ck_assert_str_eq(s.attrs[TRACING_ATTRS_MAX - 1].key, "k2");
}
END_TEST

START_TEST(test_status_error)
{
    struct tracing_span s;
    char msg[TRACING_STATUS_MESSAGE_MAX + 100];

    tracing_span_begin(NULL, &s, NULL, "x", TRACING_CLIENT);
    ck_assert_int_eq(s.status, TRACING_STATUS_UNSET);
    tracing_span_error(&s, "HTTP 503 from the fulfilment service");
    ck_assert_int_eq(s.status, TRACING_STATUS_ERROR);
    ck_assert_str_eq(s.status_message, "HTTP 503 from the fulfilment service");
    memset(msg, 'm', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    tracing_span_error(&s, msg);
    ck_assert_uint_eq(strlen(s.status_message), TRACING_STATUS_MESSAGE_MAX);
    tracing_span_error(&s, NULL);
    ck_assert_str_eq(s.status_message, "");
    ck_assert_int_eq(s.status, TRACING_STATUS_ERROR);
}
END_TEST

/* No tracer: ids for the logs and for propagation, nothing recorded. */
START_TEST(test_null_tracer)
{
    struct tracing_span s, c;
    struct tracing_stats st;

    tracing_span_begin(NULL, &s, NULL, "root", TRACING_SERVER);
    ck_assert(is_hex(s.ctx.trace_id, TRACE_ID_HEX_LEN));
    ck_assert(is_hex(s.ctx.span_id, SPAN_ID_HEX_LEN));
    ck_assert_int_eq(s.ctx.flags, 1); /* as trace_new(): downstream may sample */
    ck_assert(!s.recording);
    tracing_span_attr_str(&s, "http.route", "/orders");
    tracing_span_begin(NULL, &c, &s.ctx, "child", TRACING_CLIENT);
    ck_assert_str_eq(c.ctx.trace_id, s.ctx.trace_id);
    ck_assert_str_eq(c.parent_span_id, s.ctx.span_id);
    tracing_span_error(&c, "failed");
    tracing_span_end(NULL, &c);
    tracing_span_end(NULL, &s);
    ck_assert_int_ge(s.end_unix_ns, s.start_unix_ns);
    tracing_stats_get(NULL, &st);
    ck_assert_uint_eq(st.exported + st.dropped + st.buffered + st.requests, 0);
    tracing_stop(NULL);
    ck_assert_int_eq(tracing_configure(NULL, &(struct tracing_options){0}), -EINVAL);
}
END_TEST

/* A tracer without an endpoint records nothing, however sampled. */
START_TEST(test_off_records_nothing)
{
    struct tracing *t = start_tracer("", 1, NULL, NULL);
    struct tracing_span s;
    tracing_span_begin(t, &s, NULL, "root", TRACING_SERVER);
    ck_assert_int_eq(s.ctx.flags, 1);
    ck_assert(!s.recording);
    tracing_span_end(t, &s);
    ck_assert_uint_eq(stats(t).buffered, 0);
    tracing_stop(t);
}
END_TEST

/* ---- checks ---------------------------------------------------------------------- */

static const struct {
    const char *url;
    int rc;
} endpoint_cases[] = {
    {"http://127.0.0.1:4318/v1/traces", 0},
    {"https://otel.example.com/v1/traces", 0},
    {"HTTP://collector:4318/v1/traces", 0},
    {"http://[::1]:4318/v1/traces", 0},
    {"ftp://collector/v1/traces", -EINVAL},
    {"collector:4318/v1/traces", -EINVAL},
    {"127.0.0.1:4318", -EINVAL},
    {"http://", -EINVAL},
    {"http:///v1/traces", -EINVAL},
    {"http://a b/v1/traces", -EINVAL},
    {"", -EINVAL},
};

START_TEST(test_endpoint_check)
{
    char why[256] = "";
    int rc = tracing_endpoint_check(endpoint_cases[_i].url, why, sizeof(why));
    ck_assert_msg(rc == endpoint_cases[_i].rc, "%s: %d (%s)", endpoint_cases[_i].url, rc, why);
    if (rc != 0)
        ck_assert_ptr_nonnull(strstr(why, "http:// or https://"));
}
END_TEST

static const struct {
    const char *text; /* the file */
    int rc;
    const char *why; /* a part of the message (after "PATH:"), when rc != 0 */
} headers_cases[] = {
    {"Authorization: Bearer abc\n", 0, NULL},
    {"# a comment\n\n  \nX-Scope-OrgID:tenant-1\nAuthorization:   Bearer abc  \n", 0, NULL},
    {"", 0, NULL},
    {"Authorization: Bearer abc", 0, NULL}, /* no final newline */
    {"Authorization Bearer abc\n", -EINVAL, "1: expected Name: value"},
    {"# c\nX-Ok: 1\nBad Name: v\n", -EINVAL, "3: the name before ':' is not an HTTP header name"},
    {": v\n", -EINVAL, "1: expected Name: value"},
    {"X-Empty:   \n", -EINVAL, "1: the value is empty"},
    {"X-Token: abc\r\n", -EINVAL, "1: a carriage return"},
    {"X-Token: a\x01z\n", -EINVAL, "1: a control character in the value"},
    {"content-type: text/plain\n", -EINVAL, "1: Content-Type is set by orderd"},
    {"Content-Length: 1\n", -EINVAL, "1: Content-Length is set by orderd"},
    {"X-A: 1\nTransfer-Encoding: chunked\n", -EINVAL, "2: Transfer-Encoding is set by orderd"},
    {"H1: 1\nH2: 1\nH3: 1\nH4: 1\nH5: 1\nH6: 1\nH7: 1\nH8: 1\n"
     "H9: 1\nH10: 1\nH11: 1\nH12: 1\nH13: 1\nH14: 1\nH15: 1\nH16: 1\n# comments do not count\n",
     0, NULL},
    {"H1: 1\nH2: 1\nH3: 1\nH4: 1\nH5: 1\nH6: 1\nH7: 1\nH8: 1\n"
     "H9: 1\nH10: 1\nH11: 1\nH12: 1\nH13: 1\nH14: 1\nH15: 1\nH16: 1\nH17: 1\n",
     -EINVAL, "17: more than 16 headers"},
};

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_headers_check)
{
    char dir[256], path[300], why[512] = "";
    tmpdir_make(dir, sizeof(dir), NULL, "tracing");
    snprintf(path, sizeof(path), "%s/headers", dir);
    write_file(path, headers_cases[_i].text, strlen(headers_cases[_i].text));
    int rc = tracing_headers_check(path, why, sizeof(why));
    ck_assert_msg(rc == headers_cases[_i].rc, "case %d: %d (%s)", _i, rc, why);
    if (rc != 0) {
        char want[600];
        snprintf(want, sizeof(want), "%s:%s", path, headers_cases[_i].why);
        ck_assert_msg(strncmp(why, want, strlen(want)) == 0, "why: %s, want %s", why, want);
        ck_assert_ptr_null(strstr(why, "abc")); /* never a value */
    }
    tmpdir_remove(dir);
}
END_TEST

START_TEST(test_headers_check_files)
{
    char dir[256], path[300], why[512] = "";
    tmpdir_make(dir, sizeof(dir), NULL, "tracing");
    snprintf(path, sizeof(path), "%s/none", dir);
    ck_assert_int_eq(tracing_headers_check(path, why, sizeof(why)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(why, "No such file"));
    ck_assert_int_eq(tracing_headers_check(dir, why, sizeof(why)), -EISDIR);
    ck_assert_int_eq(tracing_headers_check("/dev/null", why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "not a regular file"));
    snprintf(path, sizeof(path), "%s/nul", dir);
    write_file(path, "X-A: a\0b\n", 9);
    ck_assert_int_eq(tracing_headers_check(path, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, ":1: a NUL byte"));
    tmpdir_remove(dir);
}
END_TEST

/* tracing_start refuses what the checks refuse. */
START_TEST(test_start_refuses_bad_options)
{
    struct tracing *t = (struct tracing *)1;
    struct tracing_options o = {.otlp_endpoint = "collector:4318", .sample_ratio = 1};
    ck_assert_int_eq(tracing_start(&o, NULL, &t), -EINVAL);
    ck_assert_ptr_null(t);
    o = (struct tracing_options){.otlp_endpoint = "http://127.0.0.1:9/", .sample_ratio = 1.5};
    ck_assert_int_eq(tracing_start(&o, NULL, &t), -EINVAL);
    o.sample_ratio = NAN;
    ck_assert_int_eq(tracing_start(&o, NULL, &t), -EINVAL);
    o = (struct tracing_options){.otlp_endpoint = "http://127.0.0.1:9/",
                                 .sample_ratio = 1,
                                 .headers_file = "/nonexistent/headers"};
    ck_assert_int_eq(tracing_start(&o, NULL, &t), -ENOENT);
    ck_assert_ptr_null(t);
}
END_TEST

/* ---- the encoding ------------------------------------------------------------------ */

START_TEST(test_encode_odd_values)
{
    struct tracing_span s[2];
    struct strbuf b = STRBUF_INIT;

    tracing_span_begin(NULL, &s[0], NULL, "name \"quoted\"\n", TRACING_SERVER);
    tracing_span_attr_str(&s[0], "ctl", "a\x01\tb\\c");
    /* a lone continuation byte, a cut sequence, an overlong '/', a surrogate,
     * then valid 2-, 3- and 4-byte characters */
    tracing_span_attr_str(
        &s[0], "bad", "x\x80y\xe2\x82z\xc0\xafw\xed\xa0\x80v\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    tracing_span_attr_double(&s[0], "nan", NAN);
    tracing_span_attr_double(&s[0], "inf", -INFINITY);
    tracing_span_attr_double(&s[0], "third", 1.0 / 3);
    tracing_span_attr_int(&s[0], "big", INT64_MIN);
    tracing_span_end(NULL, &s[0]);
    tracing_span_begin(NULL, &s[1], &s[0].ctx, "child", TRACING_CONSUMER);
    tracing_span_error(&s[1], "\xff broken");
    tracing_span_end(NULL, &s[1]);
    tracing__encode(&b, "svc\"x", "id", "host", s, 2);
    ck_assert(!b.failed);

    json_error_t err;
    json_t *root = json_loadb(b.p, b.len, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(root != NULL, "not JSON (%s): %s", err.text, b.p);
    json_t *spans = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0),
                                       "scopeSpans"),
                       0),
        "spans");
    ck_assert_uint_eq(json_array_size(spans), 2);
    json_t *a = json_object_get(json_array_get(spans, 0), "attributes");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(spans, 0), "name")),
                     "name \"quoted\"\n");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(a, 0), "value"), "stringValue")),
                     "a\x01\tb\\c");
    ck_assert_str_eq(
        json_string_value(
            json_object_get(json_object_get(json_array_get(a, 1), "value"), "stringValue")),
        "x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbdw\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
        "v\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(a, 2), "value"), "doubleValue")),
                     "NaN");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(a, 3), "value"), "doubleValue")),
                     "-Infinity");
    ck_assert_double_eq(json_real_value(json_object_get(
                            json_object_get(json_array_get(a, 4), "value"), "doubleValue")),
                        1.0 / 3);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(a, 5), "value"), "intValue")),
                     "-9223372036854775808");
    json_t *status = json_object_get(json_array_get(spans, 1), "status");
    ck_assert_int_eq(json_integer_value(json_object_get(status, "code")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(status, "message")), "\xef\xbf\xbd broken");
    ck_assert_ptr_null(json_object_get(json_array_get(spans, 0), "status")); /* unset */
    json_decref(root);
    free(strbuf_finish(&b));
}
END_TEST

/* ---- against a receiver ------------------------------------------------------------ */

static const char *attr_string(json_t *attrs, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_string_value(json_object_get(json_object_get(a, "value"), "stringValue"));
    }
    return NULL;
}

static json_t *attr_value(json_t *attrs, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_object_get(a, "value");
    }
    return NULL;
}

static json_t *span_named(json_t *spans, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(spans, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            return s;
    }
    ck_abort_msg("no span %s", name);
    return NULL;
}

/* The request's shape: resource, scope, each span's ids, kinds, times,
 * attributes, status, and the parent links. */
START_TEST(test_export_shape)
{
    struct receiver r;
    struct metrics *m = NULL;
    receiver_start(&r, 200);
    ck_assert_int_eq(metrics_new(&m), 0);
    struct tracing_options o = {
        .otlp_endpoint = r.url, .sample_ratio = 1, .service_name = "orderd-eu"};
    struct tracing *t = NULL;
    ck_assert_int_eq(tracing_start(&o, m, &t), 0);

    struct trace_context in;
    ck_assert_int_eq(trace_parse(sampled_parent_tp, &in), 0);
    struct tracing_span server, enqueue, client;
    tracing_span_begin(t, &server, &in, "POST /orders", TRACING_SERVER);
    tracing_span_attr_str(&server, "http.route", "/orders");
    tracing_span_attr_int(&server, "http.response.status_code", 202);
    tracing_span_begin(t, &enqueue, &server.ctx, "orderd.enqueue", TRACING_INTERNAL);
    tracing_span_attr_double(&enqueue, "orderd.batch_fill", 0.5);
    tracing_span_end(t, &enqueue);
    tracing_span_end(t, &server);
    tracing_span_begin(t, &client, NULL, "POST", TRACING_CLIENT);
    tracing_span_error(&client, "HTTP 500");
    tracing_span_end(t, &client);
    tracing_stop(t); /* flushes */

    ck_assert_uint_eq(receiver_reqs(&r), 1);
    struct recv_req *q = &r.reqs[0];
    ck_assert_str_eq(q->content_type, "application/json");
    ck_assert_str_eq(q->user_agent, "orderd/" ORDERD_VERSION);
    json_error_t err;
    json_t *root = json_loadb(q->body, q->len, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(root != NULL, "%s", err.text);
    json_t *rs = json_object_get(root, "resourceSpans");
    ck_assert_uint_eq(json_array_size(rs), 1);
    json_t *res = json_object_get(json_array_get(rs, 0), "resource");
    json_t *rattrs = json_object_get(res, "attributes");
    ck_assert_uint_eq(json_array_size(rattrs), 4);
    ck_assert_str_eq(attr_string(rattrs, "service.name"), "orderd-eu");
    ck_assert_str_eq(attr_string(rattrs, "service.version"), ORDERD_VERSION);
    const char *instance = attr_string(rattrs, "service.instance.id");
    ck_assert_ptr_nonnull(instance);
    ck_assert_uint_eq(strlen(instance), 36);
    ck_assert_int_eq(instance[14], '4'); /* a version 4 UUID */
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    ck_assert_str_eq(attr_string(rattrs, "host.name"), host);
    json_t *ss = json_object_get(json_array_get(rs, 0), "scopeSpans");
    ck_assert_uint_eq(json_array_size(ss), 1);
    json_t *scope = json_object_get(json_array_get(ss, 0), "scope");
    ck_assert_str_eq(json_string_value(json_object_get(scope, "name")), "orderd");
    ck_assert_str_eq(json_string_value(json_object_get(scope, "version")), ORDERD_VERSION);
    json_t *spans = json_object_get(json_array_get(ss, 0), "spans");
    ck_assert_uint_eq(json_array_size(spans), 3);

    size_t i;
    json_t *s;
    json_array_foreach(spans, i, s)
    {
        ck_assert(is_hex(json_string_value(json_object_get(s, "traceId")), 32));
        ck_assert(is_hex(json_string_value(json_object_get(s, "spanId")), 16));
        const char *start = json_string_value(json_object_get(s, "startTimeUnixNano"));
        const char *end = json_string_value(json_object_get(s, "endTimeUnixNano"));
        ck_assert(is_digits(start));
        ck_assert(is_digits(end));
        ck_assert_uint_eq(strlen(start), 19); /* nanoseconds since 1970, in this century */
        ck_assert_int_le(strtoll(start, NULL, 10), strtoll(end, NULL, 10));
        ck_assert(json_is_integer(json_object_get(s, "kind")));
        ck_assert(json_is_array(json_object_get(s, "attributes")));
    }
    json_t *js = span_named(spans, "POST /orders"), *je = span_named(spans, "orderd.enqueue"),
           *jc = span_named(spans, "POST");
    ck_assert_int_eq(json_integer_value(json_object_get(js, "kind")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(je, "kind")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(jc, "kind")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(js, "traceId")), in.trace_id);
    ck_assert_str_eq(json_string_value(json_object_get(js, "parentSpanId")), in.span_id);
    ck_assert_str_eq(json_string_value(json_object_get(je, "traceId")), in.trace_id);
    ck_assert_str_eq(json_string_value(json_object_get(je, "parentSpanId")),
                     json_string_value(json_object_get(js, "spanId")));
    ck_assert_ptr_null(json_object_get(jc, "parentSpanId")); /* a root */
    ck_assert_str_ne(json_string_value(json_object_get(jc, "traceId")), in.trace_id);
    json_t *v = attr_value(json_object_get(js, "attributes"), "http.route");
    ck_assert_str_eq(json_string_value(json_object_get(v, "stringValue")), "/orders");
    v = attr_value(json_object_get(js, "attributes"), "http.response.status_code");
    ck_assert_str_eq(json_string_value(json_object_get(v, "intValue")), "202");
    v = attr_value(json_object_get(je, "attributes"), "orderd.batch_fill");
    ck_assert_double_eq(json_real_value(json_object_get(v, "doubleValue")), 0.5);
    json_t *status = json_object_get(jc, "status");
    ck_assert_int_eq(json_integer_value(json_object_get(status, "code")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(status, "message")), "HTTP 500");
    json_decref(root);

    size_t len;
    char *text = metrics_render(m, &len);
    ck_assert_ptr_nonnull(strstr(text, "\norderd_trace_spans_exported_total 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "\norderd_trace_spans_dropped_total 0\n"));
    free(text);
    metrics_free(m);
    receiver_stop(&r);
}
END_TEST

/* More than a batch: several requests, none over TRACING_BATCH_SPANS, all sent. */
START_TEST(test_export_batches)
{
    enum { SPANS = 3 * TRACING_BATCH_SPANS + 100 };
    struct receiver r;
    receiver_start(&r, 200);
    struct tracing *t = start_tracer(r.url, 1, NULL, NULL);
    int64_t t0 = now_ms();
    for (int i = 0; i < SPANS; i++)
        end_one(t, "batch");
    wait_settled(t, SPANS);
    int64_t took = now_ms() - t0;
    struct tracing_stats st = stats(t);
    ck_assert_uint_eq(st.exported, SPANS);
    ck_assert_uint_eq(st.dropped, 0);
    size_t n = receiver_reqs(&r), total = 0;
    ck_assert_uint_ge(n, 4);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_le(r.reqs[i].spans, TRACING_BATCH_SPANS);
        ck_assert_uint_gt(r.reqs[i].spans, 0);
        total += r.reqs[i].spans;
    }
    ck_assert_uint_eq(total, SPANS);
    fprintf(stderr, "tracing: %d spans in %zu requests, %ld ms\n", SPANS, n, (long)took);
    tracing_stop(t);
    receiver_stop(&r);
}
END_TEST

/* A full batch goes at once: the span that fills it wakes the exporter. The
 * spans end just after the exporter's first tick (which found nothing), so
 * without the wake they would wait for the next, TRACING_EXPORT_INTERVAL_MS
 * later. */
START_TEST(test_export_full_batch_wakes)
{
    struct receiver r;
    receiver_start(&r, 200);
    int64_t started = now_ms();
    struct tracing *t = start_tracer(r.url, 1, NULL, NULL);
    usleep((useconds_t)(TRACING_EXPORT_INTERVAL_MS + 100) * 1000);
    for (int i = 0; i < TRACING_BATCH_SPANS - 1; i++)
        end_one(t, "wake");
    int64_t filled = now_ms();
    end_one(t, "wake");
    wait_settled(t, TRACING_BATCH_SPANS);
    ck_assert_uint_eq(receiver_reqs(&r), 1);
    ck_assert_uint_eq(r.reqs[0].spans, TRACING_BATCH_SPANS);
    ck_assert_msg(r.reqs[0].at_ms - filled < TRACING_EXPORT_INTERVAL_MS * 7 / 10,
                  "the full batch arrived %ld ms after it filled (tracer started %ld ms before)",
                  (long)(r.reqs[0].at_ms - filled), (long)(filled - started));
    tracing_stop(t);
    receiver_stop(&r);
}
END_TEST

/* A few spans go out within the interval, without a full batch. */
START_TEST(test_export_interval)
{
    struct receiver r;
    receiver_start(&r, 200);
    struct tracing *t = start_tracer(r.url, 1, NULL, NULL);
    for (int i = 0; i < 3; i++)
        end_one(t, "few");
    wait_settled(t, 3);
    ck_assert_uint_eq(stats(t).exported, 3);
    ck_assert_uint_eq(receiver_spans(&r), 3);
    tracing_stop(t);
    receiver_stop(&r);
}
END_TEST

/* 503, then 200: the same batch again; nothing lost. */
START_TEST(test_export_retry_503)
{
    struct receiver r;
    receiver_start(&r, 200);
    r.script[0] = 503;
    r.n_script = 1;
    struct tracing *t = start_tracer(r.url, 1, NULL, NULL);
    for (int i = 0; i < 5; i++)
        end_one(t, "retried");
    wait_settled(t, 5);
    struct tracing_stats st = stats(t);
    ck_assert_uint_eq(st.exported, 5);
    ck_assert_uint_eq(st.dropped, 0);
    ck_assert_uint_eq(st.requests, 2);
    ck_assert_uint_eq(receiver_reqs(&r), 2);
    ck_assert_int_eq(r.reqs[0].status, 503);
    ck_assert_uint_eq(r.reqs[0].len, r.reqs[1].len);
    ck_assert(memcmp(r.reqs[0].body, r.reqs[1].body, r.reqs[0].len) == 0);
    tracing_stop(t);
    receiver_stop(&r);
}
END_TEST

/* 429 with Retry-After: 2 — the retry waits that long (the backoff's own
 * first delay is at most TRACING_EXPORT_INTERVAL_MS). */
START_TEST(test_export_retry_after)
{
    struct receiver r;
    receiver_start(&r, 200);
    r.script[0] = 429;
    r.n_script = 1;
    r.retry_after = "2";
    struct tracing *t = start_tracer(r.url, 1, NULL, NULL);
    for (int i = 0; i < 2; i++)
        end_one(t, "throttled");
    wait_settled(t, 2);
    ck_assert_uint_eq(stats(t).exported, 2);
    ck_assert_uint_eq(receiver_reqs(&r), 2);
    ck_assert_int_ge(r.reqs[1].at_ms - r.reqs[0].at_ms, 1900);
    tracing_stop(t);
    receiver_stop(&r);
}
END_TEST

/* 400: dropped and counted, not retried. */
START_TEST(test_export_400_drops)
{
    struct receiver r;
    struct metrics *m = NULL;
    receiver_start(&r, 400);
    ck_assert_int_eq(metrics_new(&m), 0);
    struct tracing *t = start_tracer(r.url, 1, NULL, m);
    for (int i = 0; i < 7; i++)
        end_one(t, "refused");
    wait_settled(t, 7);
    usleep(1500 * 1000); /* a retry would come within the first backoff (≤ 1 s) */
    struct tracing_stats st = stats(t);
    ck_assert_uint_eq(st.dropped, 7);
    ck_assert_uint_eq(st.exported, 0);
    ck_assert_uint_eq(st.requests, 1);
    ck_assert_uint_eq(receiver_reqs(&r), 1);
    tracing_stop(t);
    size_t len;
    char *text = metrics_render(m, &len);
    ck_assert_ptr_nonnull(strstr(text, "\norderd_trace_spans_dropped_total 7\n"));
    ck_assert_ptr_nonnull(strstr(text, "\norderd_trace_spans_exported_total 0\n"));
    free(text);
    metrics_free(m);
    receiver_stop(&r);
}
END_TEST

/* 200 with partialSuccess: the rejected spans count as dropped. */
START_TEST(test_export_partial_success)
{
    struct receiver r;
    receiver_start(&r, 200);
    r.answer = "{\"partialSuccess\":{\"rejectedSpans\":\"2\",\"errorMessage\":\"too old\"}}";
    struct tracing *t = start_tracer(r.url, 1, NULL, NULL);
    for (int i = 0; i < 5; i++)
        end_one(t, "partly");
    wait_settled(t, 5);
    struct tracing_stats st = stats(t);
    ck_assert_uint_eq(st.exported, 3);
    ck_assert_uint_eq(st.dropped, 2);
    ck_assert_uint_eq(st.requests, 1);
    tracing_stop(t);
    receiver_stop(&r);
}
END_TEST

/* Nobody listens: ending spans stays quick, the buffer fills, the rest is
 * dropped and counted; stop drops what is left. Prints the cost per span. */
START_TEST(test_export_down_drops)
{
    enum { SPANS = 100000, FIRST = 8000 };
    char url[96];
    struct metrics *m = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/traces", closed_port());
    ck_assert_int_eq(metrics_new(&m), 0);
    struct tracing *t = start_tracer(url, 1, NULL, m);
    struct tracing_span s;
    tracing_span_begin(t, &s, NULL, "down", TRACING_SERVER);
    tracing_span_attr_str(&s, "http.route", "/orders");
    tracing_span_attr_int(&s, "http.response.status_code", 202);
    tracing_span_attr_str(&s, "orderd.order_id", "01M8AKP5VWG668NZ6VQ18D50Z0");

    double t0 = now_s();
    for (int i = 0; i < FIRST; i++) /* into the buffer */
        tracing_span_end(t, &s);
    double t1 = now_s();
    for (int i = FIRST; i < SPANS; i++) /* mostly dropped: the buffer is full */
        tracing_span_end(t, &s);
    double t2 = now_s();
    fprintf(stderr,
            "tracing: span_end with the collector down: %.0f ns per span into the buffer "
            "(%d), %.0f ns per span when full (%d)\n",
            (t1 - t0) / FIRST * 1e9, FIRST, (t2 - t1) / (SPANS - FIRST) * 1e9, SPANS - FIRST);

    struct tracing_stats st = stats(t);
    ck_assert_uint_ge(st.dropped, SPANS - TRACING_BUFFER_SPANS - TRACING_BATCH_SPANS);
    ck_assert_uint_eq(st.exported, 0);
    int64_t until = now_ms() + WAIT_MS; /* the exporter tried, and keeps trying */
    while (stats(t).requests < 2 && now_ms() < until)
        usleep(10000);
    ck_assert_uint_ge(stats(t).requests, 2);
    ck_assert_uint_eq(stats(t).exported, 0);
    double t3 = now_s();
    tracing_stop(t);
    double stop_s = now_s() - t3;
    ck_assert_msg(stop_s < TRACING_FLUSH_MS / 1000.0 + 5, "stop took %.1f s", stop_s);
    size_t len;
    char *text = metrics_render(m, &len);
    ck_assert_ptr_nonnull(strstr(text, "\norderd_trace_spans_dropped_total 100000\n"));
    free(text);
    metrics_free(m);
}
END_TEST

/* A collector that accepts the connection and never answers: stop gives up
 * after TRACING_FLUSH_MS and counts the spans as dropped. */
START_TEST(test_stop_bounded)
{
    unsigned port;
    int fd = silent_listener(&port);
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/traces", port);
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    struct tracing *t = start_tracer(url, 1, NULL, m);
    for (int i = 0; i < TRACING_BATCH_SPANS + 10; i++)
        end_one(t, "stuck");
    /* the first batch is in flight (and stays there) */
    int64_t until = now_ms() + WAIT_MS;
    while (stats(t).requests == 0 && now_ms() < until)
        usleep(10000);
    ck_assert_uint_eq(stats(t).requests, 1);
    int64_t t0 = now_ms();
    tracing_stop(t);
    int64_t took = now_ms() - t0;
    ck_assert_int_ge(took, TRACING_FLUSH_MS - 100);
    ck_assert_int_le(took, TRACING_FLUSH_MS + 3000);
    size_t len;
    char *text = metrics_render(m, &len);
    char want[64];
    snprintf(want, sizeof(want), "\norderd_trace_spans_dropped_total %d\n",
             TRACING_BATCH_SPANS + 10);
    ck_assert_ptr_nonnull(strstr(text, want));
    free(text);
    metrics_free(m);
    close(fd);
}
END_TEST

/* Stop sends what is buffered, without waiting for the interval. */
START_TEST(test_stop_flushes)
{
    struct receiver r;
    receiver_start(&r, 200);
    struct tracing *t = start_tracer(r.url, 1, NULL, NULL);
    for (int i = 0; i < TRACING_BATCH_SPANS + 30; i++)
        end_one(t, "flushed");
    int64_t t0 = now_ms();
    tracing_stop(t);
    ck_assert_int_lt(now_ms() - t0, TRACING_FLUSH_MS + 1000);
    ck_assert_uint_eq(receiver_spans(&r), TRACING_BATCH_SPANS + 30);
    receiver_stop(&r);
}
END_TEST

/* A span ended as soon as tracing starts (or is turned on again) is kept:
 * the exporter, which may not have seen its endpoint yet, must not take it
 * for a span ended while tracing was off. */
START_TEST(test_first_spans_kept)
{
    enum { ROUNDS = 40 };
    struct receiver r;
    receiver_start(&r, 200);
    for (int i = 0; i < ROUNDS; i++) {
        struct tracing *t = start_tracer(i % 2 ? r.url : NULL, 1, NULL, NULL);
        if (i % 2 == 0) {
            struct tracing_options o = {.otlp_endpoint = r.url, .sample_ratio = 1};
            ck_assert_int_eq(tracing_configure(t, &o), 0);
        }
        end_one(t, "first");
        tracing_stop(t);
    }
    ck_assert_uint_eq(receiver_spans(&r), ROUNDS);
    receiver_stop(&r);
}
END_TEST

/* The headers file's lines arrive with every export. */
START_TEST(test_export_headers_file)
{
    char dir[256], path[300];
    struct receiver r;
    tmpdir_make(dir, sizeof(dir), NULL, "tracing");
    snprintf(path, sizeof(path), "%s/headers", dir);
    const char *text = "# for the collector\nAuthorization: Bearer s3cr3t-t0ken\n\n"
                       "X-Scope-OrgID:  tenant-1  \n";
    write_file(path, text, strlen(text));
    receiver_start(&r, 200);
    struct tracing *t = start_tracer(r.url, 1, path, NULL);
    end_one(t, "with headers");
    tracing_stop(t);
    ck_assert_uint_eq(receiver_reqs(&r), 1);
    ck_assert_str_eq(r.reqs[0].auth, "Bearer s3cr3t-t0ken");
    ck_assert_str_eq(r.reqs[0].scope, "tenant-1");
    ck_assert_str_eq(r.reqs[0].content_type, "application/json");
    receiver_stop(&r);
    tmpdir_remove(dir);
}
END_TEST

/* Reload: another endpoint, off, a refused change (the old stays), on again,
 * a new ratio, new headers. */
START_TEST(test_configure)
{
    char dir[256], good[300], bad[300];
    struct receiver a, b;
    tmpdir_make(dir, sizeof(dir), NULL, "tracing");
    snprintf(good, sizeof(good), "%s/good", dir);
    snprintf(bad, sizeof(bad), "%s/bad", dir);
    write_file(good, "Authorization: Bearer two\n", 26);
    write_file(bad, "Content-Type: text/plain\n", 25);
    receiver_start(&a, 200);
    receiver_start(&b, 200);

    /* off at start, turned on by a reload */
    struct tracing *t = start_tracer(NULL, 1, NULL, NULL);
    struct tracing_span s;
    tracing_span_begin(t, &s, NULL, "off", TRACING_INTERNAL);
    ck_assert(!s.recording);
    struct tracing_options o = {.otlp_endpoint = a.url, .sample_ratio = 1};
    ck_assert_int_eq(tracing_configure(t, &o), 0);
    end_one(t, "to a");
    wait_settled(t, 1);
    ck_assert_uint_eq(receiver_spans(&a), 1);

    /* another endpoint, with headers */
    o = (struct tracing_options){.otlp_endpoint = b.url, .sample_ratio = 1, .headers_file = good};
    ck_assert_int_eq(tracing_configure(t, &o), 0);
    end_one(t, "to b");
    wait_settled(t, 2);
    ck_assert_uint_eq(receiver_spans(&b), 1);
    ck_assert_uint_eq(receiver_spans(&a), 1);
    ck_assert_str_eq(b.reqs[0].auth, "Bearer two");

    /* a bad change is refused: b and its headers stay */
    o = (struct tracing_options){.otlp_endpoint = a.url, .sample_ratio = 1, .headers_file = bad};
    ck_assert_int_eq(tracing_configure(t, &o), -EINVAL);
    o = (struct tracing_options){.otlp_endpoint = "ftp://x/", .sample_ratio = 1};
    ck_assert_int_eq(tracing_configure(t, &o), -EINVAL);
    end_one(t, "still to b");
    wait_settled(t, 3);
    ck_assert_uint_eq(receiver_spans(&b), 2);
    ck_assert_str_eq(b.reqs[1].auth, "Bearer two");

    /* off: nothing recorded, nothing sent */
    o = (struct tracing_options){.otlp_endpoint = NULL, .sample_ratio = 1};
    ck_assert_int_eq(tracing_configure(t, &o), 0);
    tracing_span_begin(t, &s, NULL, "off again", TRACING_INTERNAL);
    ck_assert(!s.recording);
    ck_assert_int_eq(s.ctx.flags, 1);
    tracing_span_end(t, &s);
    ck_assert_uint_eq(stats(t).buffered, 0);

    /* on again, with ratio 0: new traces are not sampled, a sampled parent is */
    o = (struct tracing_options){.otlp_endpoint = a.url, .sample_ratio = 0};
    ck_assert_int_eq(tracing_configure(t, &o), 0);
    tracing_span_begin(t, &s, NULL, "unsampled", TRACING_INTERNAL);
    ck_assert(!s.recording);
    ck_assert_int_eq(s.ctx.flags, 0);
    struct trace_context in;
    ck_assert_int_eq(trace_parse(sampled_parent_tp, &in), 0);
    tracing_span_begin(t, &s, &in, "sampled by its parent", TRACING_SERVER);
    ck_assert(s.recording);
    tracing_span_end(t, &s);
    wait_settled(t, 4);
    ck_assert_uint_eq(receiver_spans(&a), 2);
    ck_assert_str_eq(a.reqs[1].auth, ""); /* the headers went with the change */
    struct tracing_stats st = stats(t);
    ck_assert_uint_eq(st.exported, 4);
    ck_assert_uint_eq(st.dropped, 0);
    tracing_stop(t);
    receiver_stop(&a);
    receiver_stop(&b);
    tmpdir_remove(dir);
}
END_TEST

/* ---- threads ---------------------------------------------------------------------- */

struct ender {
    struct tracing *t;
    int spans;
};

static void *end_spans(void *arg)
{
    struct ender *e = arg;
    struct tracing_span parent, s;
    tracing_span_begin(e->t, &parent, NULL, "parent", TRACING_SERVER);
    for (int i = 0; i < e->spans; i++) {
        tracing_span_begin(e->t, &s, &parent.ctx, "threaded", TRACING_INTERNAL);
        tracing_span_attr_int(&s, "i", i);
        tracing_span_end(e->t, &s);
        if (i % 50 == 49)
            usleep(500); /* paced, so that the exporter drains while spans end */
    }
    tracing_span_end(e->t, &parent);
    return NULL;
}

/* Four threads end spans while a fifth switches the endpoint back and forth:
 * every span is either exported or counted as dropped, and the receivers got
 * exactly the exported ones. */
START_TEST(test_threads_end_while_configuring)
{
    enum { THREADS = 4, PER_THREAD = 5000 };
    struct receiver a, b;
    receiver_start(&a, 200);
    receiver_start(&b, 200);
    struct tracing *t = start_tracer(a.url, 1, NULL, NULL);
    pthread_t th[THREADS];
    struct ender e = {t, PER_THREAD};
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, end_spans, &e), 0);
    for (int i = 0; i < 20; i++) {
        struct tracing_options o = {.otlp_endpoint = i % 2 ? a.url : b.url, .sample_ratio = 1};
        ck_assert_int_eq(tracing_configure(t, &o), 0);
        usleep(5000);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    wait_settled(t, THREADS * (PER_THREAD + 1));
    struct tracing_stats st = stats(t);
    ck_assert_uint_eq(st.exported + st.dropped, THREADS * (PER_THREAD + 1));
    ck_assert_uint_eq(st.buffered, 0);
    tracing_stop(t);
    ck_assert_uint_eq(receiver_spans(&a) + receiver_spans(&b), st.exported);
    fprintf(stderr, "tracing: %d threads: %lu spans exported, %lu dropped\n", THREADS,
            (unsigned long)st.exported, (unsigned long)st.dropped);
    receiver_stop(&a);
    receiver_stop(&b);
}
END_TEST

Suite *suite_tracing(void)
{
    Suite *s = suite_create("tracing");
    TCase *logic = tcase_create("tracer");
    TCase *exporter = tcase_create("exporter");

    tcase_set_timeout(logic, UNIT_TIMEOUT_LOGIC);
    tcase_add_test(logic, test_sampling_exact_ends);
    tcase_add_test(logic, test_sampling_ratios);
    tcase_add_test(logic, test_ids_child_and_root);
    tcase_add_test(logic, test_ids_unique);
    tcase_add_test(logic, test_ids_without_random_source);
    tcase_add_test(logic, test_attrs_bounded);
    tcase_add_test(logic, test_status_error);
    tcase_add_test(logic, test_null_tracer);
    tcase_add_test(logic, test_off_records_nothing);
    tcase_add_loop_test(logic, test_endpoint_check, 0, N(endpoint_cases));
    tcase_add_loop_test(logic, test_headers_check, 0, N(headers_cases));
    tcase_add_test(logic, test_headers_check_files);
    tcase_add_test(logic, test_start_refuses_bad_options);
    tcase_add_test(logic, test_encode_odd_values);
    suite_add_tcase(s, logic);

    tcase_set_timeout(exporter, UNIT_TIMEOUT_THREADED);
    tcase_add_test(exporter, test_sampling_parent_obeyed);
    tcase_add_test(exporter, test_export_shape);
    tcase_add_test(exporter, test_export_batches);
    tcase_add_test(exporter, test_export_full_batch_wakes);
    tcase_add_test(exporter, test_export_interval);
    tcase_add_test(exporter, test_export_retry_503);
    tcase_add_test(exporter, test_export_retry_after);
    tcase_add_test(exporter, test_export_400_drops);
    tcase_add_test(exporter, test_export_partial_success);
    tcase_add_test(exporter, test_export_down_drops);
    tcase_add_test(exporter, test_stop_bounded);
    tcase_add_test(exporter, test_stop_flushes);
    tcase_add_test(exporter, test_first_spans_kept);
    tcase_add_test(exporter, test_export_headers_file);
    tcase_add_test(exporter, test_configure);
    tcase_add_test(exporter, test_threads_end_while_configuring);
    suite_add_tcase(s, exporter);
    return s;
}
