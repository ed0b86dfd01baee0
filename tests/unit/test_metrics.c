/*
 * test_metrics.c — the registry and its exposition: every family with HELP
 * and TYPE, counters, {route,code} samples, cumulative histogram buckets,
 * scrape-time gauges and the storage_up signal, label escaping, process_*
 * samples, exact totals under concurrent updates, and `promtool check
 * metrics` on the output when promtool is installed.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "timeouts.h"

Suite *suite_metrics(void);

#define PROMTOOL "/usr/bin/promtool"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static struct metrics *m;

/* The id the HTTP server would get for a route template. */
static unsigned route(const char *template) { return metrics_route_register(m, template); }

static void setup(void)
{
    m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    ck_assert_ptr_nonnull(m);
}

static void teardown(void)
{
    metrics_free(m);
    m = NULL;
}

static char *render(void)
{
    size_t len = 0;
    char *s = metrics_render(m, &len);

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(strlen(s), len);
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(s[len - 1], '\n');
    return s;
}

/* The value of the sample whose name-and-labels is exactly series; 0 or -1. */
static int sample(const char *text, const char *series, double *out)
{
    size_t n = strlen(series);

    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            char *end;
            *out = strtod(p + n + 1, &end);
            ck_assert_ptr_eq(end, nl);
            return 0;
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return -1;
}

static double value(const char *text, const char *series)
{
    double v = NAN;

    if (sample(text, series, &v) != 0)
        ck_abort_msg("no sample %s in:\n%s", series, text);
    return v;
}

static void assert_no_series(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);

    if (p != NULL && (p == text || p[-1] == '\n'))
        ck_abort_msg("unexpected %s in:\n%s", prefix, text);
}

static void assert_family(const char *text, const char *name, const char *type)
{
    char help[128], typeline[128];

    snprintf(help, sizeof(help), "\n# HELP %s ", name);
    snprintf(typeline, sizeof(typeline), "\n# TYPE %s %s\n", name, type);
    const char *h = strstr(text, help);
    const char *t = strstr(text, typeline);
    if (strncmp(text, help + 1, strlen(help + 1)) == 0)
        h = text;
    if (h == NULL || t == NULL || t < h)
        ck_abort_msg("family %s (%s) lacks HELP/TYPE in:\n%s", name, type, text);
}

/* ---- families ------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *type;
} fresh_families[] = {
    {"orderd_orders_received_total", "counter"},
    {"orderd_orders_processed_total", "counter"},
    {"orderd_orders_failed_total", "counter"},
    {"orderd_orders_dead_lettered_total", "counter"},
    {"orderd_intake_commits_total", "counter"},
    {"orderd_storage_up", "gauge"},
    {"orderd_http_requests_total", "counter"},
    {"orderd_http_request_duration_seconds", "histogram"},
    {"orderd_processing_duration_seconds", "histogram"},
    {"orderd_storage_sync_duration_seconds", "histogram"},
    {"orderd_fulfilment_results_total", "counter"},
    {"orderd_fulfilment_duration_seconds", "histogram"},
    {"orderd_fulfilment_in_flight", "gauge"},
    {"orderd_retention_deleted_total", "counter"},
    {"orderd_trace_spans_exported_total", "counter"},
    {"orderd_trace_spans_dropped_total", "counter"},
    {"orderd_build_info", "gauge"},
    {"process_cpu_seconds_total", "counter"},
    {"process_resident_memory_bytes", "gauge"},
    {"process_virtual_memory_bytes", "gauge"},
    {"process_start_time_seconds", "gauge"},
    {"process_open_fds", "gauge"},
    {"process_max_fds", "gauge"},
};

START_TEST(test_fresh_render_families)
{
    char *s = render();

    assert_family(s, fresh_families[_i].name, fresh_families[_i].type);
    free(s);
}
END_TEST

START_TEST(test_fresh_render_values)
{
    char *s = render();

    ck_assert_double_eq(value(s, "orderd_orders_received_total"), 0);
    ck_assert_double_eq(value(s, "orderd_orders_dead_lettered_total"), 0);
    ck_assert_double_eq(value(s, "orderd_storage_up"), 0);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_bucket{le=\"+Inf\"}"), 0);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_count"), 0);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_sum"), 0);
    ck_assert_double_eq(value(s, "orderd_intake_commits_total"), 0);
    ck_assert_double_eq(value(s, "orderd_storage_sync_duration_seconds_count"), 0);
    ck_assert_double_eq(
        value(s, "orderd_build_info{version=\"unknown\",sqlite_version=\"unknown\"}"), 1);
    assert_no_series(s, "orderd_queue_depth");
    assert_no_series(s, "orderd_http_requests_total{");
    assert_no_series(s, "orderd_http_request_duration_seconds_bucket");
    free(s);
}
END_TEST

/* ---- counters ------------------------------------------------------------- */

START_TEST(test_counters_add_up)
{
    metrics_counter_add(m, METRICS_ORDERS_RECEIVED, 1);
    metrics_counter_add(m, METRICS_ORDERS_RECEIVED, 41);
    metrics_counter_add(m, METRICS_ORDERS_PROCESSED, 40);
    metrics_counter_add(m, METRICS_ORDERS_FAILED, 3);
    metrics_counter_add(m, METRICS_ORDERS_DEAD_LETTERED, 2);
    metrics_counter_add(m, METRICS_ORDERS_DEAD_LETTERED, 0);
    metrics_counter_add(m, METRICS_INTAKE_COMMITS, 5);
    metrics_counter_add(m, (enum metrics_counter)99, 7); /* ignored */

    ck_assert_uint_eq(metrics_counter_get(m, METRICS_ORDERS_RECEIVED), 42);
    ck_assert_uint_eq(metrics_counter_get(m, METRICS_ORDERS_PROCESSED), 40);
    ck_assert_uint_eq(metrics_counter_get(m, METRICS_ORDERS_FAILED), 3);
    ck_assert_uint_eq(metrics_counter_get(m, METRICS_ORDERS_DEAD_LETTERED), 2);
    ck_assert_uint_eq(metrics_counter_get(m, METRICS_INTAKE_COMMITS), 5);
    ck_assert_uint_eq(metrics_counter_get(m, (enum metrics_counter)99), 0);

    char *s = render();
    ck_assert_ptr_nonnull(strstr(s, "\norderd_orders_received_total 42\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_orders_processed_total 40\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_orders_failed_total 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_orders_dead_lettered_total 2\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_intake_commits_total 5\n"));
    free(s);
}
END_TEST

START_TEST(test_counter_large_values_exact)
{
    metrics_counter_add(m, METRICS_ORDERS_PROCESSED, UINT64_C(9007199254740993));
    char *s = render();
    ck_assert_ptr_nonnull(strstr(s, "\norderd_orders_processed_total 9007199254740993\n"));
    free(s);
}
END_TEST

/* ---- HTTP requests and histograms ------------------------------------------- */

/* Observations and the cumulative count they give at each le, in bucket order. */
static const double observed[] = {0.00005, 0.0001, 0.0003, 0.002, 0.002, 0.7, 3, 20};
static const struct {
    const char *le;
    double cumulative;
} want_buckets[] = {
    {"0.0001", 2}, {"0.00025", 2}, {"0.0005", 3}, {"0.001", 3}, {"0.0025", 5}, {"0.005", 5},
    {"0.01", 5},   {"0.025", 5},   {"0.05", 5},   {"0.1", 5},   {"0.25", 5},   {"0.5", 5},
    {"1", 6},      {"2.5", 6},     {"5", 7},      {"10", 7},    {"+Inf", 8},
};

START_TEST(test_http_observe_samples)
{
    double sum = 0;
    char series[256];

    for (size_t i = 0; i < sizeof(observed) / sizeof(observed[0]); i++) {
        metrics_http_observe(m, route("/orders"), i % 2 ? 202 : 400, observed[i]);
        sum += observed[i];
    }
    metrics_http_observe(m, route("/orders/{id}"), 404, 0.001);
    char *s = render();

    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"/orders\",code=\"202\"}"), 4);
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"/orders\",code=\"400\"}"), 4);
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"/orders/{id}\",code=\"404\"}"),
                        1);
    assert_no_series(s, "orderd_http_requests_total{route=\"/orders\",code=\"200\"}");

    double prev = 0;
    for (size_t i = 0; i < sizeof(want_buckets) / sizeof(want_buckets[0]); i++) {
        snprintf(series, sizeof(series),
                 "orderd_http_request_duration_seconds_bucket{route=\"/orders\",le=\"%s\"}",
                 want_buckets[i].le);
        double v = value(s, series);
        ck_assert_double_eq(v, want_buckets[i].cumulative);
        ck_assert_double_ge(v, prev);
        prev = v;
    }
    double count = value(s, "orderd_http_request_duration_seconds_count{route=\"/orders\"}");
    ck_assert_double_eq(count, 8);
    ck_assert_double_eq(
        value(s, "orderd_http_request_duration_seconds_bucket{route=\"/orders\",le=\"+Inf\"}"),
        count);
    ck_assert_double_eq_tol(value(s, "orderd_http_request_duration_seconds_sum{route=\"/orders\"}"),
                            sum, 1e-9);
    ck_assert_double_eq(
        value(s, "orderd_http_request_duration_seconds_count{route=\"/orders/{id}\"}"), 1);
    ck_assert_double_eq_tol(
        value(s, "orderd_http_request_duration_seconds_sum{route=\"/orders/{id}\"}"), 0.001, 1e-12);
    /* routes that saw no request have no histogram */
    assert_no_series(s, "orderd_http_request_duration_seconds_bucket{route=\"/healthz\"");
    free(s);
}
END_TEST

/* The two histograms without labels, each fed by its own observe function;
 * _i: 0 processing, 1 sync. The other one stays empty. */
static const struct {
    const char *name;
    const char *other;
    void (*observe)(struct metrics *m, double seconds);
} plain_histograms[] = {
    {"orderd_processing_duration_seconds", "orderd_storage_sync_duration_seconds",
     metrics_processing_observe},
    {"orderd_storage_sync_duration_seconds", "orderd_processing_duration_seconds",
     metrics_sync_observe},
};

START_TEST(test_plain_histograms)
{
    const char *name = plain_histograms[_i].name;
    double sum = 0;
    char series[128];

    for (size_t i = 0; i < sizeof(observed) / sizeof(observed[0]); i++) {
        plain_histograms[_i].observe(m, observed[i]);
        sum += observed[i];
    }
    char *s = render();
    for (size_t i = 0; i < sizeof(want_buckets) / sizeof(want_buckets[0]); i++) {
        snprintf(series, sizeof(series), "%s_bucket{le=\"%s\"}", name, want_buckets[i].le);
        ck_assert_double_eq(value(s, series), want_buckets[i].cumulative);
    }
    snprintf(series, sizeof(series), "%s_count", name);
    ck_assert_double_eq(value(s, series), 8);
    snprintf(series, sizeof(series), "%s_sum", name);
    ck_assert_double_eq_tol(value(s, series), sum, 1e-9);
    snprintf(series, sizeof(series), "%s_count", plain_histograms[_i].other);
    ck_assert_double_eq(value(s, series), 0);
    free(s);
}
END_TEST

/* Negative or NaN durations (a clock step) count as instant; huge ones as +Inf. */
START_TEST(test_observe_odd_durations)
{
    metrics_processing_observe(m, -1);
    metrics_processing_observe(m, NAN);
    metrics_processing_observe(m, INFINITY);
    char *s = render();
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_bucket{le=\"0.0001\"}"), 2);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_bucket{le=\"10\"}"), 2);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_bucket{le=\"+Inf\"}"), 3);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_count"), 3);
    double sum = value(s, "orderd_processing_duration_seconds_sum");
    ck_assert(isfinite(sum));
    free(s);
}
END_TEST

START_TEST(test_http_status_out_of_range_and_bad_route)
{
    unsigned healthz = route("/healthz");
    metrics_http_observe(m, healthz, 99, 0.1);
    metrics_http_observe(m, healthz, 600, 0.1);
    metrics_http_observe(m, healthz, 100, 0.1);
    metrics_http_observe(m, healthz, 599, 0.1);
    metrics_http_observe(m, 77, 404, 0.1); /* never registered: "other" */
    char *s = render();
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"/healthz\",code=\"100\"}"), 1);
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"/healthz\",code=\"599\"}"), 1);
    ck_assert_double_eq(value(s, "orderd_http_request_duration_seconds_count{route=\"/healthz\"}"),
                        2);
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"other\",code=\"404\"}"), 1);
    assert_no_series(s, "orderd_http_requests_total{route=\"/healthz\",code=\"99\"}");
    assert_no_series(s, "orderd_http_requests_total{route=\"/healthz\",code=\"600\"}");
    free(s);
}
END_TEST

/* The route table of src/daemon.c, as the HTTP server registers it. */
static const char *const route_want[] = {
    "/orders",
    "/orders/{id}",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "/status.json",
    "/admin/dlq",
    "/admin/dlq/{id}",
    "/admin/dlq/{id}/redrive",
    "/admin/dlq/redrive",
};

/* Each registered template is its own label, in both families. */
START_TEST(test_route_labels_are_templates)
{
    for (int i = 0; i < N(route_want); i++)
        route(route_want[i]);
    unsigned r = route(route_want[_i]);
    char series[256];

    ck_assert_uint_ne(r, METRICS_ROUTE_OTHER);
    ck_assert_str_eq(metrics_route_label(m, r), route_want[_i]);
    metrics_http_observe(m, r, 200, 0.01);
    char *s = render();
    snprintf(series, sizeof(series), "orderd_http_requests_total{route=\"%s\",code=\"200\"}",
             route_want[_i]);
    ck_assert_double_eq(value(s, series), 1);
    snprintf(series, sizeof(series), "orderd_http_request_duration_seconds_count{route=\"%s\"}",
             route_want[_i]);
    ck_assert_double_eq(value(s, series), 1);
    free(s);
}
END_TEST

/* A template registered twice (GET and POST /orders) is one route. */
START_TEST(test_route_register_same_template_same_id)
{
    unsigned a = route("/orders"), b = route("/orders/{id}");
    ck_assert_uint_ne(a, b);
    ck_assert_uint_eq(route("/orders"), a);
    metrics_http_observe(m, a, 202, 0.01);
    metrics_http_observe(m, route("/orders"), 202, 0.01);
    char *s = render();
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"/orders\",code=\"202\"}"), 2);
    free(s);
}
END_TEST

/* Past METRICS_ROUTES_MAX a template counts as "other", never out of bounds. */
START_TEST(test_route_register_full)
{
    char t[32];
    unsigned last = METRICS_ROUTE_OTHER;
    for (int i = 1; i < METRICS_ROUTES_MAX; i++) {
        snprintf(t, sizeof(t), "/r%d", i);
        last = route(t);
        ck_assert_uint_eq(last, (unsigned)i);
    }
    ck_assert_uint_eq(route("/one-too-many"), METRICS_ROUTE_OTHER);
    ck_assert_uint_eq(route("/r1"), 1);
    metrics_http_observe(m, route("/one-too-many"), 404, 0.01);
    char *s = render();
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"other\",code=\"404\"}"), 1);
    free(s);
}
END_TEST

START_TEST(test_route_label_out_of_range)
{
    ck_assert_str_eq(metrics_route_label(m, METRICS_ROUTE_OTHER), "other");
    ck_assert_str_eq(metrics_route_label(m, 5), "other"); /* not registered */
    ck_assert_str_eq(metrics_route_label(m, METRICS_ROUTES_MAX), "other");
    ck_assert_str_eq(metrics_route_label(m, (unsigned)-1), "other");
}
END_TEST

/* ---- scrape-time gauges ------------------------------------------------------- */

/* A backend's own samples, as store_sqlite.c puts its WAL's. */
struct fake_wal {
    bool has_wal;
    uint64_t wal_bytes;
    uint64_t checkpoints_completed;
    uint64_t checkpoints_partial;
    uint64_t checkpoints_failed;
};

struct fake_storage {
    int rc;
    int calls;
    struct metrics_queue_gauges g;
    struct fake_wal wal;
};

static void put_wal(const struct fake_wal *w, struct metrics_sink *sink)
{
    struct metrics_sample size = {"orderd_storage_wal_bytes", "gauge", "WAL size.", NULL,
                                  w->wal_bytes};
    metrics_sink_put(sink, &size);
    const char *labels[] = {"result=\"completed\"", "result=\"partial\"", "result=\"failed\""};
    uint64_t values[] = {w->checkpoints_completed, w->checkpoints_partial, w->checkpoints_failed};
    for (size_t i = 0; i < 3; i++) {
        struct metrics_sample c = {"orderd_storage_checkpoints_total", "counter", "Checkpoints.",
                                   labels[i], values[i]};
        metrics_sink_put(sink, &c);
    }
}

static int fake_gauges(void *arg, struct metrics_queue_gauges *g, struct metrics_sink *more)
{
    struct fake_storage *f = arg;

    f->calls++;
    if (f->wal.has_wal)
        put_wal(&f->wal, more);
    if (f->rc == 0)
        *g = f->g;
    return f->rc;
}

START_TEST(test_gauge_callback_values)
{
    struct fake_storage f = {
        .g = {.queue_depth = 1234, .oldest_age_seconds = 0.1 + 0.2, .dlq_depth = 7}};

    metrics_set_gauge_source(m, fake_gauges, &f);
    char *s = render();
    ck_assert_int_eq(f.calls, 1);
    assert_family(s, "orderd_queue_depth", "gauge");
    assert_family(s, "orderd_queue_oldest_age_seconds", "gauge");
    assert_family(s, "orderd_dlq_depth", "gauge");
    ck_assert_ptr_nonnull(strstr(s, "\norderd_queue_depth 1234\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_queue_oldest_age_seconds 0.30000000000000004\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_dlq_depth 7\n"));
    ck_assert_double_eq(value(s, "orderd_storage_up"), 1);
    /* Not SQLite: no WAL to speak of. */
    ck_assert_ptr_null(strstr(s, "orderd_storage_wal_bytes"));
    ck_assert_ptr_null(strstr(s, "orderd_storage_checkpoints_total"));
    free(s);

    f.g.oldest_age_seconds = 86400;
    s = render();
    ck_assert_ptr_nonnull(strstr(s, "\norderd_queue_oldest_age_seconds 86400\n"));
    free(s);
    f.g.oldest_age_seconds = 0.5;
    s = render();
    ck_assert_ptr_nonnull(strstr(s, "\norderd_queue_oldest_age_seconds 0.5\n"));
    free(s);
}
END_TEST

/* SQLite's WAL: the size as a gauge, the checkpoints as one counter family
 * with a result label, each value where it belongs. */
START_TEST(test_gauge_wal)
{
    struct fake_storage f = {.wal = {.has_wal = true,
                                     .wal_bytes = 8392704,
                                     .checkpoints_completed = 146,
                                     .checkpoints_partial = 3,
                                     .checkpoints_failed = 2}};

    metrics_set_gauge_source(m, fake_gauges, &f);
    char *s = render();
    assert_family(s, "orderd_storage_wal_bytes", "gauge");
    assert_family(s, "orderd_storage_checkpoints_total", "counter");
    ck_assert_ptr_nonnull(strstr(s, "\norderd_storage_wal_bytes 8392704\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_storage_checkpoints_total{result=\"completed\"} 146\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_storage_checkpoints_total{result=\"partial\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "\norderd_storage_checkpoints_total{result=\"failed\"} 2\n"));
    free(s);
}
END_TEST

START_TEST(test_gauge_callback_failure)
{
    struct fake_storage f = {.rc = -EIO,
                             .g = {.queue_depth = 1,
                                   .oldest_age_seconds = 1,
                                   .dlq_depth = 1},
                             .wal = {.has_wal = true, .wal_bytes = 1}};

    metrics_set_gauge_source(m, fake_gauges, &f);
    char *s = render();
    ck_assert_int_eq(f.calls, 1);
    ck_assert_double_eq(value(s, "orderd_storage_up"), 0);
    ck_assert_ptr_null(strstr(s, "orderd_queue_depth"));
    ck_assert_ptr_null(strstr(s, "orderd_queue_oldest_age_seconds"));
    ck_assert_ptr_null(strstr(s, "orderd_dlq_depth"));
    ck_assert_ptr_null(strstr(s, "orderd_storage_wal_bytes"));
    free(s);

    /* recovers on the next scrape; a NULL source turns it off again */
    f.rc = 0;
    s = render();
    ck_assert_double_eq(value(s, "orderd_storage_up"), 1);
    free(s);
    metrics_set_gauge_source(m, NULL, NULL);
    s = render();
    ck_assert_double_eq(value(s, "orderd_storage_up"), 0);
    ck_assert_ptr_null(strstr(s, "orderd_queue_depth"));
    free(s);
    ck_assert_int_eq(f.calls, 2);
}
END_TEST

/* ---- build info ----------------------------------------------------------------- */

START_TEST(test_build_info_escaped)
{
    metrics_set_build_info(m, "1.2.3-\"rc\"\\x\ny", "3.40.1");
    char *s = render();
    ck_assert_ptr_nonnull(strstr(
        s, "\norderd_build_info{version=\"1.2.3-\\\"rc\\\"\\\\x\\ny\",sqlite_version=\"3.40.1\"} 1\n"));
    free(s);

    metrics_set_build_info(m, "2.0.0", NULL);
    s = render();
    ck_assert_double_eq(value(s, "orderd_build_info{version=\"2.0.0\",sqlite_version=\"unknown\"}"),
                        1);
    free(s);
}
END_TEST

/* ---- process_* ------------------------------------------------------------------ */

START_TEST(test_process_metrics)
{
    struct rlimit rl;
    char *s = render();
    double now = (double)time(NULL);

    ck_assert_double_ge(value(s, "process_cpu_seconds_total"), 0);
    ck_assert_double_gt(value(s, "process_resident_memory_bytes"), 0);
    ck_assert_double_ge(value(s, "process_virtual_memory_bytes"),
                        value(s, "process_resident_memory_bytes"));
    double start = value(s, "process_start_time_seconds");
    ck_assert_double_le(start, now + 2);
    ck_assert_double_gt(start, now - 3600);
    ck_assert_double_ge(value(s, "process_open_fds"), 3);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY)
        ck_assert_double_eq(value(s, "process_max_fds"), (double)rl.rlim_cur);
    free(s);
}
END_TEST

START_TEST(test_process_open_fds_counts)
{
    char *s = render();
    double before = value(s, "process_open_fds");
    free(s);

    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    s = render();
    ck_assert_double_eq(value(s, "process_open_fds"), before + 2);
    free(s);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* ---- concurrency ---------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 100000

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_counter_add(m, METRICS_ORDERS_RECEIVED, 1);
        metrics_http_observe(m, route("/orders"), 202, 0.001);
        metrics_processing_observe(m, 0.25);
    }
    return NULL;
}

static atomic_int scraping;

static void *scraper(void *arg)
{
    (void)arg;
    while (atomic_load(&scraping)) {
        size_t len;
        char *s = metrics_render(m, &len);
        ck_assert_ptr_nonnull(s);
        free(s);
    }
    return NULL;
}

START_TEST(test_concurrent_exact_totals)
{
    pthread_t t[THREADS], r;
    const double total = (double)THREADS * PER_THREAD;

    atomic_store(&scraping, 1);
    ck_assert_int_eq(pthread_create(&r, NULL, scraper, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    atomic_store(&scraping, 0);
    ck_assert_int_eq(pthread_join(r, NULL), 0);

    ck_assert_uint_eq(metrics_counter_get(m, METRICS_ORDERS_RECEIVED),
                      (uint64_t)THREADS * PER_THREAD);
    char *s = render();
    ck_assert_double_eq(value(s, "orderd_orders_received_total"), total);
    ck_assert_double_eq(value(s, "orderd_http_requests_total{route=\"/orders\",code=\"202\"}"),
                        total);
    ck_assert_double_eq(value(s, "orderd_http_request_duration_seconds_count{route=\"/orders\"}"),
                        total);
    ck_assert_double_eq(
        value(s, "orderd_http_request_duration_seconds_bucket{route=\"/orders\",le=\"0.001\"}"),
        total);
    ck_assert_double_eq(
        value(s, "orderd_http_request_duration_seconds_bucket{route=\"/orders\",le=\"0.0005\"}"), 0);
    ck_assert_double_eq_tol(
        value(s, "orderd_http_request_duration_seconds_sum{route=\"/orders\"}"), total * 0.001,
        1e-9);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_count"), total);
    ck_assert_double_eq(value(s, "orderd_processing_duration_seconds_sum"), total * 0.25);
    free(s);
}
END_TEST

/* ---- promtool ----------------------------------------------------------------------- */

static void fill_everything(struct fake_storage *f)
{
    f->wal.has_wal = true;
    f->wal.wal_bytes = 4198312;
    f->wal.checkpoints_completed = 41;
    f->wal.checkpoints_partial = 2;
    f->wal.checkpoints_failed = 1;
    metrics_set_gauge_source(m, fake_gauges, f);
    metrics_set_build_info(m, "0.1.0 \"q\" \\ \n", "3.40.1");
    metrics_counter_add(m, METRICS_ORDERS_RECEIVED, 10);
    metrics_counter_add(m, METRICS_ORDERS_FAILED, 1);
    metrics_http_observe(m, METRICS_ROUTE_OTHER, 404, 0.0001);
    for (int r = 0; r < N(route_want); r++)
        metrics_http_observe(m, route(route_want[r]), 201 + (unsigned)r, 0.0001 * (r + 2));
    metrics_http_observe(m, route("/orders"), 503, 7.5);
    metrics_processing_observe(m, 0.033);
    metrics_processing_observe(m, 12);
}

/* _i: 0 = fresh registry, 1 = everything set, 2 = storage failing. */
START_TEST(test_promtool_check)
{
    struct fake_storage f = {.g = {.queue_depth = 5, .oldest_age_seconds = 12.75, .dlq_depth = 2}};
    char path[] = "/tmp/orderd-metrics-XXXXXX";
    char cmd[256], out[4096];

    if (access(PROMTOOL, X_OK) != 0) {
        printf("test_metrics: %s not found, promtool check skipped "
               "(apt-get install prometheus)\n", PROMTOOL);
        return;
    }
    if (_i >= 1)
        fill_everything(&f);
    if (_i == 2)
        f.rc = -EIO;

    size_t len;
    char *s = metrics_render(m, &len);
    ck_assert_ptr_nonnull(s);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, s, len), (ssize_t)len);
    close(fd);
    free(s);

    snprintf(cmd, sizeof(cmd), "%s check metrics < %s 2>&1", PROMTOOL, path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    unlink(path);
    ck_assert_str_eq(out, "");
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* ---- the one list --------------------------------------------------------------- */

/* Fulfilment: results by name, durations by kind, and the in-flight gauge. */
START_TEST(test_fulfilment_series)
{
    metrics_fulfilment_observe(m, METRICS_FULFILMENT_HTTP, METRICS_FULFILMENT_OK, 0.2);
    metrics_fulfilment_observe(m, METRICS_FULFILMENT_HTTP, METRICS_FULFILMENT_REJECTED, 0.003);
    metrics_fulfilment_observe(m, METRICS_FULFILMENT_COMMAND, METRICS_FULFILMENT_TIMEOUT, 10);
    metrics_fulfilment_observe(m, METRICS_FULFILMENT_KIND_COUNT, METRICS_FULFILMENT_OK, 1);
    metrics_fulfilment_in_flight_add(m, 3);
    metrics_fulfilment_in_flight_add(m, -1);
    char *s = render();

    ck_assert_double_eq(value(s, "orderd_fulfilment_results_total{result=\"ok\"}"), 1);
    ck_assert_double_eq(value(s, "orderd_fulfilment_results_total{result=\"rejected\"}"), 1);
    ck_assert_double_eq(value(s, "orderd_fulfilment_results_total{result=\"timeout\"}"), 1);
    ck_assert_double_eq(value(s, "orderd_fulfilment_results_total{result=\"failed\"}"), 0);
    ck_assert_double_eq(value(s, "orderd_fulfilment_results_total{result=\"error\"}"), 0);
    ck_assert_double_eq(value(s, "orderd_fulfilment_duration_seconds_count{kind=\"http\"}"), 2);
    ck_assert_double_eq(value(s, "orderd_fulfilment_duration_seconds_count{kind=\"command\"}"), 1);
    ck_assert_double_eq(
        value(s, "orderd_fulfilment_duration_seconds_bucket{kind=\"http\",le=\"0.005\"}"), 1);
    ck_assert_double_eq(value(s, "orderd_fulfilment_duration_seconds_sum{kind=\"command\"}"), 10);
    ck_assert_double_eq(value(s, "orderd_fulfilment_in_flight"), 2);
    free(s);
}
END_TEST

/* Retention: deleted orders by [retention] key, both series from the start. */
START_TEST(test_retention_series)
{
    char *s = render();
    ck_assert_double_eq(value(s, "orderd_retention_deleted_total{table=\"completed\"}"), 0);
    ck_assert_double_eq(value(s, "orderd_retention_deleted_total{table=\"dead_letters\"}"), 0);
    free(s);
    metrics_retention_add(m, METRICS_RETENTION_COMPLETED, 500);
    metrics_retention_add(m, METRICS_RETENTION_COMPLETED, 7);
    metrics_retention_add(m, METRICS_RETENTION_DEAD_LETTERS, 3);
    metrics_retention_add(m, METRICS_RETENTION_COUNT, 99); /* ignored */
    s = render();
    ck_assert_double_eq(value(s, "orderd_retention_deleted_total{table=\"completed\"}"), 507);
    ck_assert_double_eq(value(s, "orderd_retention_deleted_total{table=\"dead_letters\"}"), 3);
    free(s);
}
END_TEST

/* Tracing: exported and dropped spans, both at 0 from the start (tracing off). */
START_TEST(test_trace_spans_series)
{
    char *s = render();
    ck_assert_double_eq(value(s, "orderd_trace_spans_exported_total"), 0);
    ck_assert_double_eq(value(s, "orderd_trace_spans_dropped_total"), 0);
    free(s);
    metrics_trace_spans_add(m, 512, 0);
    metrics_trace_spans_add(m, 100, 3);
    metrics_trace_spans_add(m, 0, 8192);
    s = render();
    ck_assert_double_eq(value(s, "orderd_trace_spans_exported_total"), 612);
    ck_assert_double_eq(value(s, "orderd_trace_spans_dropped_total"), 8195);
    free(s);
}
END_TEST

Suite *suite_metrics(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_fulfilment_series);
    tcase_add_test(tc, test_retention_series);
    tcase_add_test(tc, test_trace_spans_series);
    tcase_add_loop_test(tc, test_fresh_render_families, 0, N(fresh_families));
    tcase_add_test(tc, test_fresh_render_values);
    tcase_add_test(tc, test_counters_add_up);
    tcase_add_test(tc, test_counter_large_values_exact);
    tcase_add_test(tc, test_http_observe_samples);
    tcase_add_loop_test(tc, test_plain_histograms, 0, N(plain_histograms));
    tcase_add_test(tc, test_observe_odd_durations);
    tcase_add_test(tc, test_http_status_out_of_range_and_bad_route);
    tcase_add_loop_test(tc, test_route_labels_are_templates, 0, N(route_want));
    tcase_add_test(tc, test_route_register_same_template_same_id);
    tcase_add_test(tc, test_route_register_full);
    tcase_add_test(tc, test_route_label_out_of_range);
    tcase_add_test(tc, test_gauge_callback_values);
    tcase_add_test(tc, test_gauge_wal);
    tcase_add_test(tc, test_gauge_callback_failure);
    tcase_add_test(tc, test_build_info_escaped);
    tcase_add_test(tc, test_process_metrics);
    tcase_add_test(tc, test_process_open_fds_counts);
    tcase_add_test(tc, test_concurrent_exact_totals);
    tcase_add_loop_test(tc, test_promtool_check, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}
