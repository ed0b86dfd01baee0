/*
 * metrics.c — counters, histograms and the Prometheus text exposition (0.0.4).
 *
 * Owns: struct metrics, made once by main and handed to the modules that
 * count: the order counters, the HTTP request counters indexed by
 * [route][status - 100], the histograms (HTTP request duration per route,
 * processing, fsync, fulfilment), the span counts of tracing, the route
 * labels, the build-info labels and the scrape-time gauge callback. Leaves
 * to others: which routes exist (the HTTP server registers each template),
 * what the queue gauges are and what else a backend reports (storage
 * answers through the callback and puts its own samples into a
 * metrics_sink), and serving the text (the HTTP module calls
 * metrics_render()).
 *
 * Threads: every function is safe from any thread. Updates are single relaxed
 * atomic adds, lock-free and wait-free: a histogram keeps one atomic per
 * bucket (not cumulative; cumulated at render), its count is the sum of its
 * buckets so `le="+Inf"` always equals `_count`, and its sum is an atomic
 * count of nanoseconds. Only the build-info strings, the callback and route
 * registration, done at start-up, take a mutex (never taken by an update);
 * a route's label is written before the count that publishes it.
 *
 * Invariant: every metric family in the exposition has # HELP and # TYPE,
 * and its samples follow them contiguously. `promtool check metrics` finds
 * nothing in the output (tests/unit/test_metrics.c checks this).
 */
#include "metrics.h"
#include "strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define HTTP_STATUS_MIN 100
#define HTTP_STATUS_MAX 599
#define HTTP_STATUS_SLOTS (HTTP_STATUS_MAX - HTTP_STATUS_MIN + 1)
#define MAX_OBSERVED_SECONDS 1e9 /* clamp, so nanoseconds fit in uint64 */
#define RENDER_INITIAL_CAP 16384

/* Upper bounds, seconds; the last bucket is +Inf. Text kept beside the value
 * so that `le` prints exactly as written here. */
static const double bucket_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                       0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                       1,      2.5,     5,      10};
static const char *const bucket_labels[] = {"0.0001", "0.00025", "0.0005", "0.001",
                                            "0.0025", "0.005",   "0.01",   "0.025",
                                            "0.05",   "0.1",     "0.25",   "0.5",
                                            "1",      "2.5",     "5",      "10"};
#define BUCKET_FINITE (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))
#define BUCKET_COUNT (BUCKET_FINITE + 1)

struct histogram {
    _Atomic uint64_t buckets[BUCKET_COUNT]; /* non-cumulative */
    _Atomic uint64_t sum_ns;
};

struct metrics {
    _Atomic uint64_t counters[METRICS_COUNTER_COUNT];
    _Atomic uint64_t http_requests[METRICS_ROUTES_MAX][HTTP_STATUS_SLOTS];
    struct histogram http_duration[METRICS_ROUTES_MAX];
    /* Route templates by id; [0] is "other". Written once each under lock,
     * before route_count is raised (release), so a reader that loads the
     * count (acquire) sees every label below it. */
    char *route_labels[METRICS_ROUTES_MAX];
    _Atomic unsigned route_count;
    struct histogram processing;
    struct histogram sync;
    _Atomic uint64_t fulfilment_results[METRICS_FULFILMENT_RESULT_COUNT];
    struct histogram fulfilment_duration[METRICS_FULFILMENT_KIND_COUNT];
    _Atomic int64_t fulfilment_in_flight;
    _Atomic uint64_t retention_deleted[METRICS_RETENTION_COUNT];
    _Atomic uint64_t trace_spans_exported, trace_spans_dropped;

    pthread_mutex_t lock; /* guards the fields below */
    metrics_gauge_fn gauge_fn;
    void *gauge_arg;
    char *version;
    char *sqlite_version;
};

static const char other_route_label[] = "other";

static const char *const fulfilment_result_labels[METRICS_FULFILMENT_RESULT_COUNT] = {
    [METRICS_FULFILMENT_OK] = "ok",
    [METRICS_FULFILMENT_FAILED] = "failed",
    [METRICS_FULFILMENT_TIMEOUT] = "timeout",
    [METRICS_FULFILMENT_REJECTED] = "rejected",
    [METRICS_FULFILMENT_ERROR] = "error",
};

static const char *const retention_labels[METRICS_RETENTION_COUNT] = {
    [METRICS_RETENTION_COMPLETED] = "completed",
    [METRICS_RETENTION_DEAD_LETTERS] = "dead_letters",
};

static const char *const fulfilment_kind_labels[METRICS_FULFILMENT_KIND_COUNT] = {
    [METRICS_FULFILMENT_COMMAND] = "command",
    [METRICS_FULFILMENT_HTTP] = "http",
};

static const struct {
    const char *name;
    const char *help;
} counter_info[METRICS_COUNTER_COUNT] = {
    [METRICS_ORDERS_RECEIVED] = {"orderd_orders_received_total",
                                 "Orders accepted by POST /orders (idempotent replays excluded)."},
    [METRICS_ORDERS_PROCESSED] = {"orderd_orders_processed_total",
                                  "Orders completed by a worker."},
    [METRICS_ORDERS_FAILED] = {"orderd_orders_failed_total",
                               "Processing attempts that failed."},
    [METRICS_ORDERS_DEAD_LETTERED] = {"orderd_orders_dead_lettered_total",
                                      "Orders moved to the dead-letter table."},
    [METRICS_INTAKE_COMMITS] = {"orderd_intake_commits_total",
                                "Transactions that wrote accepted orders; each is one group "
                                "commit shared by the orders that arrived together."},
};

static const char unknown_label[] = "unknown";

int metrics_new(struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return -ENOMEM;
    /* calloc's zero bytes are valid zero atomics on every target we build for */
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return -ENOMEM;
    }
    atomic_store(&m->route_count, 1); /* METRICS_ROUTE_OTHER */
    *out = m;
    return 0;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->lock);
    for (unsigned r = 1; r < atomic_load(&m->route_count); r++)
        free(m->route_labels[r]);
    free(m->version);
    free(m->sqlite_version);
    free(m);
}

void metrics_set_gauge_source(struct metrics *m, metrics_gauge_fn fn, void *arg)
{
    pthread_mutex_lock(&m->lock);
    m->gauge_fn = fn;
    m->gauge_arg = arg;
    pthread_mutex_unlock(&m->lock);
}

/* Keeps the old values if a copy cannot be made (the function cannot fail). */
void metrics_set_build_info(struct metrics *m, const char *version, const char *sqlite_version)
{
    char *v = strdup(version != NULL ? version : unknown_label);
    char *s = strdup(sqlite_version != NULL ? sqlite_version : unknown_label);

    if (v == NULL || s == NULL) {
        free(v);
        free(s);
        return;
    }
    pthread_mutex_lock(&m->lock);
    free(m->version);
    free(m->sqlite_version);
    m->version = v;
    m->sqlite_version = s;
    pthread_mutex_unlock(&m->lock);
}

void metrics_counter_add(struct metrics *m, enum metrics_counter c, uint64_t n)
{
    if ((unsigned)c >= METRICS_COUNTER_COUNT)
        return;
    atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

uint64_t metrics_counter_get(const struct metrics *m, enum metrics_counter c)
{
    if ((unsigned)c >= METRICS_COUNTER_COUNT)
        return 0;
    return atomic_load_explicit(&m->counters[c], memory_order_relaxed);
}

static void histogram_observe(struct histogram *h, double seconds)
{
    size_t i = 0;

    if (!(seconds >= 0)) /* negative or NaN: a clock step, count it as instant */
        seconds = 0;
    if (seconds > MAX_OBSERVED_SECONDS)
        seconds = MAX_OBSERVED_SECONDS;
    while (i < BUCKET_FINITE && seconds > bucket_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)llround(seconds * 1e9),
                              memory_order_relaxed);
}

/* A request with a status outside 100..599 is not counted (it cannot be on the wire). */
void metrics_http_observe(struct metrics *m, unsigned route, unsigned status, double seconds)
{
    if (route >= atomic_load_explicit(&m->route_count, memory_order_acquire))
        route = METRICS_ROUTE_OTHER;
    if (status < HTTP_STATUS_MIN || status > HTTP_STATUS_MAX)
        return;
    atomic_fetch_add_explicit(&m->http_requests[route][status - HTTP_STATUS_MIN], 1,
                              memory_order_relaxed);
    histogram_observe(&m->http_duration[route], seconds);
}

void metrics_processing_observe(struct metrics *m, double seconds)
{
    histogram_observe(&m->processing, seconds);
}

void metrics_sync_observe(struct metrics *m, double seconds)
{
    histogram_observe(&m->sync, seconds);
}

void metrics_fulfilment_observe(struct metrics *m, enum metrics_fulfilment_kind kind,
                                enum metrics_fulfilment_result result, double seconds)
{
    if ((unsigned)kind >= METRICS_FULFILMENT_KIND_COUNT ||
        (unsigned)result >= METRICS_FULFILMENT_RESULT_COUNT)
        return;
    atomic_fetch_add_explicit(&m->fulfilment_results[result], 1, memory_order_relaxed);
    histogram_observe(&m->fulfilment_duration[kind], seconds);
}

void metrics_retention_add(struct metrics *m, enum metrics_retention table, uint64_t n)
{
    if ((unsigned)table < METRICS_RETENTION_COUNT)
        atomic_fetch_add_explicit(&m->retention_deleted[table], n, memory_order_relaxed);
}

void metrics_fulfilment_in_flight_add(struct metrics *m, int64_t delta)
{
    atomic_fetch_add_explicit(&m->fulfilment_in_flight, delta, memory_order_relaxed);
}

void metrics_trace_spans_add(struct metrics *m, uint64_t exported, uint64_t dropped)
{
    if (exported != 0)
        atomic_fetch_add_explicit(&m->trace_spans_exported, exported, memory_order_relaxed);
    if (dropped != 0)
        atomic_fetch_add_explicit(&m->trace_spans_dropped, dropped, memory_order_relaxed);
}

static unsigned route_find(const struct metrics *m, unsigned count, const char *template)
{
    for (unsigned r = 1; r < count; r++)
        if (strcmp(m->route_labels[r], template) == 0)
            return r;
    return METRICS_ROUTE_OTHER;
}

unsigned metrics_route_register(struct metrics *m, const char *template)
{
    pthread_mutex_lock(&m->lock);
    unsigned count = atomic_load_explicit(&m->route_count, memory_order_relaxed);
    unsigned id = route_find(m, count, template);
    if (id == METRICS_ROUTE_OTHER && count < METRICS_ROUTES_MAX &&
        (m->route_labels[count] = strdup(template)) != NULL) {
        id = count;
        atomic_store_explicit(&m->route_count, count + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->lock);
    return id;
}

const char *metrics_route_label(const struct metrics *m, unsigned route)
{
    if (route == METRICS_ROUTE_OTHER ||
        route >= atomic_load_explicit(&m->route_count, memory_order_acquire))
        return other_route_label;
    return m->route_labels[route];
}

/* ---- rendering ------------------------------------------------------------ */

/* A growing output buffer; after the first failed allocation every append is a no-op. */
/* A label value: backslash, double quote and newline escaped. */
static void buf_label_value(struct strbuf *b, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\')
            strbuf_add(b, "\\\\", 2);
        else if (*p == '"')
            strbuf_add(b, "\\\"", 2);
        else if (*p == '\n')
            strbuf_add(b, "\\n", 2);
        else
            strbuf_add(b, p, 1);
    }
}

/*
 * A float as Prometheus parses it: integers without a fraction, otherwise the
 * shortest %g that reads back to the same double; NaN and +Inf/-Inf by name.
 */
static void format_double(char out[40], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        strcpy(out, "0"); /* also -0 */
        return;
    }
    if (v == trunc(v) && fabs(v) < 1e15) {
        snprintf(out, 40, "%.0f", v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v)
            return;
    }
}

static void buf_double(struct strbuf *b, double v)
{
    char s[40];

    format_double(s, v);
    strbuf_str(b, s);
}

static void family(struct strbuf *b, const char *name, const char *type, const char *help)
{
    strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram's samples; route may be NULL (no labels). */
static void render_histogram(struct strbuf *b, const char *name, const char *label,
                             const char *value, const struct histogram *h)
{
    uint64_t cumulative = 0;

    for (size_t i = 0; i < BUCKET_COUNT; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        strbuf_printf(b, "%s_bucket{", name);
        if (label != NULL) {
            strbuf_printf(b, "%s=\"", label);
            buf_label_value(b, value);
            strbuf_str(b, "\",");
        }
        strbuf_printf(b, "le=\"%s\"} %" PRIu64 "\n",
                   i < BUCKET_FINITE ? bucket_labels[i] : "+Inf", cumulative);
    }
    uint64_t sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    const char *suffixes[] = {"_sum", "_count"};
    for (int k = 0; k < 2; k++) {
        strbuf_printf(b, "%s%s", name, suffixes[k]);
        if (label != NULL) {
            strbuf_printf(b, "{%s=\"", label);
            buf_label_value(b, value);
            strbuf_str(b, "\"}");
        }
        strbuf_str(b, " ");
        if (k == 0)
            buf_double(b, (double)sum_ns / 1e9);
        else
            strbuf_printf(b, "%" PRIu64, cumulative);
        strbuf_str(b, "\n");
    }
}

static uint64_t histogram_count(const struct histogram *h)
{
    uint64_t n = 0;

    for (size_t i = 0; i < BUCKET_COUNT; i++)
        n += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    return n;
}

static void render_counters(struct strbuf *b, const struct metrics *m)
{
    for (int c = 0; c < METRICS_COUNTER_COUNT; c++) {
        family(b, counter_info[c].name, "counter", counter_info[c].help);
        strbuf_printf(b, "%s %" PRIu64 "\n", counter_info[c].name,
                   metrics_counter_get(m, (enum metrics_counter)c));
    }
}

/* What a gauge source puts of its own, rendered after the queue gauges. */
struct metrics_sink {
    struct strbuf buf;
    const char *last_family;
};

void metrics_sink_put(struct metrics_sink *sink, const struct metrics_sample *sample)
{
    struct strbuf *b = &sink->buf;

    if (sink->last_family == NULL || strcmp(sink->last_family, sample->family) != 0)
        family(b, sample->family, sample->type, sample->help);
    sink->last_family = sample->family;
    strbuf_str(b, sample->family);
    if (sample->labels != NULL)
        strbuf_printf(b, "{%s}", sample->labels);
    strbuf_printf(b, " %" PRIu64 "\n", sample->value);
}

static void render_queue_gauges(struct strbuf *b, metrics_gauge_fn fn, void *arg)
{
    struct metrics_queue_gauges g = {0};
    struct metrics_sink more = {.buf = STRBUF_INIT};
    bool up = fn != NULL && fn(arg, &g, &more) >= 0;

    if (up) {
        family(b, "orderd_queue_depth", "gauge", "Orders waiting in the queue.");
        strbuf_printf(b, "orderd_queue_depth %" PRIu64 "\n", g.queue_depth);
        family(b, "orderd_queue_oldest_age_seconds", "gauge",
                "Age of the oldest order waiting in the queue (0 when empty).");
        strbuf_str(b, "orderd_queue_oldest_age_seconds ");
        buf_double(b, g.oldest_age_seconds);
        strbuf_str(b, "\n");
        family(b, "orderd_dlq_depth", "gauge", "Orders in the dead-letter table.");
        strbuf_printf(b, "orderd_dlq_depth %" PRIu64 "\n", g.dlq_depth);
    }
    size_t more_len = more.buf.len;
    char *more_text = strbuf_finish(&more.buf);
    if (more_text == NULL)
        b->failed = true;
    else if (up)
        strbuf_add(b, more_text, more_len);
    free(more_text);
    family(b, "orderd_storage_up", "gauge",
           "Whether this scrape could read the queue gauges from storage (1) or not (0).");
    strbuf_printf(b, "orderd_storage_up %d\n", up ? 1 : 0);
}

static void render_http(struct strbuf *b, const struct metrics *m)
{
    family(b, "orderd_http_requests_total", "counter",
           "HTTP requests answered, by route template and status code.");
    unsigned routes = atomic_load_explicit(&m->route_count, memory_order_acquire);
    for (unsigned r = 0; r < routes; r++) {
        for (int s = 0; s < HTTP_STATUS_SLOTS; s++) {
            uint64_t n = atomic_load_explicit(&m->http_requests[r][s], memory_order_relaxed);
            if (n == 0)
                continue;
            strbuf_str(b, "orderd_http_requests_total{route=\"");
            buf_label_value(b, metrics_route_label(m, r));
            strbuf_printf(b, "\",code=\"%d\"} %" PRIu64 "\n", s + HTTP_STATUS_MIN, n);
        }
    }
    family(b, "orderd_http_request_duration_seconds", "histogram",
           "Time to answer an HTTP request, by route template.");
    for (unsigned r = 0; r < routes; r++) {
        if (histogram_count(&m->http_duration[r]) != 0)
            render_histogram(b, "orderd_http_request_duration_seconds", "route",
                             metrics_route_label(m, r), &m->http_duration[r]);
    }
}

/* One sample per label value of a counter family kept as an array. */
static void render_labelled(struct strbuf *b, const char *name, const char *label,
                            const char *const *values, const _Atomic uint64_t *counts, int n)
{
    for (int i = 0; i < n; i++)
        strbuf_printf(b, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, values[i],
                      atomic_load_explicit(&counts[i], memory_order_relaxed));
}

/* The fulfilment step of processing: its results, durations and what is in flight. */
static void render_fulfilment(struct strbuf *b, const struct metrics *m)
{
    family(b, "orderd_fulfilment_results_total", "counter",
           "Fulfilment attempts (command or HTTP request) by result: ok, failed (retried), "
           "timeout (retried), rejected (dead-lettered at once), error (could not start).");
    render_labelled(b, "orderd_fulfilment_results_total", "result", fulfilment_result_labels,
                    m->fulfilment_results, METRICS_FULFILMENT_RESULT_COUNT);
    family(b, "orderd_fulfilment_duration_seconds", "histogram",
           "Time taken by one fulfilment attempt, by kind (command or http).");
    for (int k = 0; k < METRICS_FULFILMENT_KIND_COUNT; k++)
        render_histogram(b, "orderd_fulfilment_duration_seconds", "kind",
                         fulfilment_kind_labels[k], &m->fulfilment_duration[k]);
    family(b, "orderd_fulfilment_in_flight", "gauge",
           "Fulfilments running now on this node (at most fulfilment_concurrency).");
    strbuf_printf(b, "orderd_fulfilment_in_flight %" PRId64 "\n",
                  atomic_load_explicit(&m->fulfilment_in_flight, memory_order_relaxed));
}

/* Retention: what the sweeper deleted, by the [retention] key. */
static void render_retention(struct strbuf *b, const struct metrics *m)
{
    family(b, "orderd_retention_deleted_total", "counter",
           "Orders deleted because they outlived [retention] completed or dead_letters "
           "(table: which of the two).");
    render_labelled(b, "orderd_retention_deleted_total", "table", retention_labels,
                    m->retention_deleted, METRICS_RETENTION_COUNT);
}

/* Tracing: what the exporter sent and what it lost; both at 0 when tracing is off. */
static void render_tracing(struct strbuf *b, const struct metrics *m)
{
    family(b, "orderd_trace_spans_exported_total", "counter",
           "Spans the OpenTelemetry collector accepted.");
    strbuf_printf(b, "orderd_trace_spans_exported_total %" PRIu64 "\n",
                  atomic_load_explicit(&m->trace_spans_exported, memory_order_relaxed));
    family(b, "orderd_trace_spans_dropped_total", "counter",
           "Spans lost: the export buffer was full (collector slow or down), the collector "
           "refused them, or they were still unsent when tracing stopped.");
    strbuf_printf(b, "orderd_trace_spans_dropped_total %" PRIu64 "\n",
                  atomic_load_explicit(&m->trace_spans_dropped, memory_order_relaxed));
}

/* The pipeline behind the API: durable intake and processing. */
static void render_pipeline(struct strbuf *b, const struct metrics *m)
{
    family(b, "orderd_processing_duration_seconds", "histogram",
           "Time taken by one processing attempt of an order, success or failure.");
    render_histogram(b, "orderd_processing_duration_seconds", NULL, NULL, &m->processing);
    family(b, "orderd_storage_sync_duration_seconds", "histogram",
           "Time of each fsync that makes accepted orders durable before their 202 "
           "(SQLite with durability = full; elsewhere the commit includes it).");
    render_histogram(b, "orderd_storage_sync_duration_seconds", NULL, NULL, &m->sync);
    render_fulfilment(b, m);
    render_retention(b, m);
    render_tracing(b, m);
}

static void render_build_info(struct strbuf *b, const char *version, const char *sqlite_version)
{
    family(b, "orderd_build_info", "gauge", "Build information; the value is always 1.");
    strbuf_str(b, "orderd_build_info{version=\"");
    buf_label_value(b, version);
    strbuf_str(b, "\",sqlite_version=\"");
    buf_label_value(b, sqlite_version);
    strbuf_str(b, "\"} 1\n");
}

/* ---- process_* from /proc/self ------------------------------------------ */

/* Reads a small /proc file into out (NUL-terminated); bytes read or -1. */
static ssize_t read_small_file(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "re");

    if (f == NULL)
        return -1;
    size_t n = fread(out, 1, size - 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad)
        return -1;
    out[n] = '\0';
    return (ssize_t)n;
}

/* Seconds since the epoch at boot, from the "btime" line of /proc/stat; 0 or -1. */
static int read_boot_time(unsigned long long *btime)
{
    FILE *f = fopen("/proc/stat", "re");
    char *line = NULL;
    size_t cap = 0;
    int rc = -1;

    if (f == NULL)
        return -1;
    while (getline(&line, &cap, f) >= 0) {
        if (sscanf(line, "btime %llu", btime) == 1) {
            rc = 0;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* Open descriptors, the directory's own excluded; 0 or -1. */
static int count_open_fds(uint64_t *n)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    uint64_t count = 0;

    if (d == NULL)
        return -1;
    int self = dirfd(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (atoi(e->d_name) == self)
            continue;
        count++;
    }
    closedir(d);
    *n = count;
    return 0;
}

static void sample_u64(struct strbuf *b, const char *name, const char *type, const char *help,
                      uint64_t v)
{
    family(b, name, type, help);
    strbuf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void sample_double(struct strbuf *b, const char *name, const char *type, const char *help,
                         double v)
{
    family(b, name, type, help);
    strbuf_printf(b, "%s ", name);
    buf_double(b, v);
    strbuf_str(b, "\n");
}

static void render_process(struct strbuf *b)
{
    char stat[1024];
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long utime, stime, starttime, vsize, btime;
    long long rss;
    const char *p = NULL;

    if (read_small_file("/proc/self/stat", stat, sizeof(stat)) > 0)
        p = strrchr(stat, ')'); /* the command name may hold spaces and ')' */
    /* after ") ": state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24) */
    bool have_stat = p != NULL && ticks > 0 &&
                     sscanf(p + 1,
                            " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu"
                            " %*d %*d %*d %*d %*d %*d %llu %llu %lld",
                            &utime, &stime, &starttime, &vsize, &rss) == 5;

    if (have_stat) {
        sample_double(b, "process_cpu_seconds_total", "counter",
                     "Total user and system CPU time spent in seconds.",
                     (double)(utime + stime) / (double)ticks);
        if (page > 0)
            sample_u64(b, "process_resident_memory_bytes", "gauge",
                      "Resident memory size in bytes.",
                      rss > 0 ? (uint64_t)rss * (uint64_t)page : 0);
        sample_u64(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                  vsize);
        if (read_boot_time(&btime) == 0)
            sample_double(b, "process_start_time_seconds", "gauge",
                         "Start time of the process since unix epoch in seconds.",
                         (double)btime + (double)starttime / (double)ticks);
    }

    uint64_t fds;
    if (count_open_fds(&fds) == 0)
        sample_u64(b, "process_open_fds", "gauge", "Number of open file descriptors.", fds);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        sample_u64(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                  (uint64_t)rl.rlim_cur);
}

char *metrics_render(struct metrics *m, size_t *len)
{
    struct strbuf b = STRBUF_INIT;
    metrics_gauge_fn fn;
    void *arg;
    char *version = NULL, *sqlite_version = NULL;

    /* copy what the lock guards, so the callback runs without it */
    pthread_mutex_lock(&m->lock);
    fn = m->gauge_fn;
    arg = m->gauge_arg;
    if (m->version != NULL) {
        version = strdup(m->version);
        sqlite_version = strdup(m->sqlite_version);
        b.failed = version == NULL || sqlite_version == NULL;
    }
    pthread_mutex_unlock(&m->lock);

    strbuf_reserve(&b, RENDER_INITIAL_CAP - 1);
    render_counters(&b, m);
    render_queue_gauges(&b, fn, arg);
    render_http(&b, m);
    render_pipeline(&b, m);
    render_build_info(&b, version != NULL ? version : unknown_label,
                      sqlite_version != NULL ? sqlite_version : unknown_label);
    render_process(&b);
    free(version);
    free(sqlite_version);

    size_t rendered = b.len;
    char *text = strbuf_finish(&b);
    if (text != NULL && len != NULL)
        *len = rendered;
    return text;
}
