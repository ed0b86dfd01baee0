/*
 * daemon.c — the life cycle of a running orderd, on one libuv loop.
 *
 * Start, in order: metrics, tracer, store, workers, committer, APIs, HTTP server;
 * then READY=1 to systemd and the line "listening on HOST:PORT". The loop
 * thread then only handles signals and timers:
 *   SIGTERM / SIGINT  drain: HTTP answers 503 to new work (and /readyz 503)
 *                     while in-flight requests finish (bounded by
 *                     HTTP_DRAIN_TIMEOUT_MS); the committer writes what it
 *                     holds and answers its requests; the workers finish
 *                     their current message and release other leases; the
 *                     listener stays open, answering 503, until then and
 *                     for at least [server] drain_grace (a load balancer's
 *                     health checks see the 503, not a refused connection);
 *                     then HTTP stops, the database is checkpointed and
 *                     closed; exit 0. A second signal cuts the grace short.
 *   SIGHUP            re-read the config file; apply what can change live
 *                     ([log], [limits], [auth], [retention], [tracing]).
 *   housekeeping      every minute: prune expired idempotency keys.
 * Stop is start in reverse, except that the committer is quiesced, and when
 * no request is left the workers are stopped, before HTTP stops (see the
 * drain below and stop_all); the tracer stops last but the metrics, so that
 * the spans of the last requests and deliveries are sent.
 *
 * Threads: everything in this file runs on the loop thread (main thread).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api_admin.h"
#include "api_orders.h"
#include "api_status.h"
#include "api_system.h"
#include "auth.h"
#include "committer.h"
#include "daemon.h"
#include "http.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "ratelimit.h"
#include "retention.h"
#include "store.h"
#include "tracing.h"
#include "worker.h"

#define HOUSEKEEPING_MS (60 * 1000)
#define DEADLINES_MS 1000
#define DRAIN_POLL_MS 20
#define WHY_MAX 512

struct daemon {
    const char *config_path;
    struct config *cfg;
    char *const *envp;

    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t housekeeping;
    uv_timer_t deadlines;
    uv_timer_t drain_timer;
    double drain_deadline;        /* for requests in flight at SIGTERM */
    double grace_end;             /* the listener stays open at least until then */
    bool draining;
    bool intake_stopped;          /* committer quiesced (and workers stopped if none was left) */

    struct metrics *metrics;
    struct tracing *tracing;      /* always there; records nothing without otlp_endpoint */
    struct store *store;
    struct workers *workers;
    struct committer *committer;
    struct retention *retention;
    struct api_orders *orders;
    struct api_system system;
    struct api_status status;
    struct api_admin admin;
    struct auth *auth;            /* NULL: no keys_file, no auth */
    struct ratelimit *ratelimit;  /* always there; rate 0 = off */
    struct http_server *http;
};

/* ---- start ----------------------------------------------------------------- */

/* Creates the database's missing parent directories, 0750 (private to the
 * orderd user and group, as the systemd StateDirectory). */
static int ensure_parent_dir(const char *db_path)
{
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s", db_path);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return -ENAMETOOLONG;
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
                int err = -errno;
                log_error(NULL, "cannot create directory %s: %s", dir, strerror(-err));
                return err;
            }
            if (end)
                return 0;
            *p = '/';
        }
    }
}

static int open_store(struct daemon *d)
{
    const struct config *c = d->cfg;
    if (c->backend == STORE_BACKEND_SQLITE) {
        int err = ensure_parent_dir(c->storage_path);
        if (err != 0)
            return err;
    }
    struct store_options so = {
        .backend = c->backend,
        .path = c->storage_path,
        .dsn = c->dsn,
        .durability = c->durability,
    };
    return store_open(&so, &d->store) == STORE_OK ? 0 : -EIO;
}

static int start_workers(struct daemon *d)
{
    const struct config *c = d->cfg;
    struct worker_options wo = {
        .count = c->worker_count,
        .visibility_timeout_ms = c->visibility_timeout_ms,
        .max_receives = c->max_receives,
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .fulfilment_command = c->fulfilment_command,
        .fulfilment_url = c->fulfilment_url,
        .fulfilment_ca_file = c->fulfilment_ca_file,
        .fulfilment_secret_file = c->fulfilment_secret_file,
        .fulfilment_timeout_ms = c->fulfilment_timeout_ms,
        .fulfilment_concurrency = c->fulfilment_concurrency,
        .tracing = d->tracing,
    };
    int err = workers_start(d->store, d->metrics, &wo, &d->workers);
    if (err != 0)
        log_error(NULL, "cannot start workers: %s", strerror(-err));
    return err;
}

/* Reads a whole PEM file; caller frees. NULL with a log line on failure. */
static char *read_pem(const char *path)
{
    char why[WHY_MAX];
    char *pem = NULL;
    if (http_tls_read_pem(path, &pem, why, sizeof(why)) != 0)
        log_error(NULL, "tls: %s", why);
    return pem;
}

/*
 * The route table. Entries stay {"METHOD", "/pattern", ...} literals:
 * tests/ops/openapi-check.mjs finds the served routes by that form. The
 * monitoring routes have no scope; with [auth] protect_status, /metrics and
 * /status.json still need a known key (needs_key, the last field).
 */
#define DAEMON_ROUTES_MAX 16

/*
 * The routes orderd serves, one line each (http.h: struct http_route); the
 * pattern is also the route's label in the HTTP metrics, and
 * tests/ops/openapi-check.mjs reads these {"METHOD", "/pattern" lines to
 * check that docs/openapi.yaml documents every one. Returns how many.
 */
static size_t build_routes(struct daemon *d, struct http_route routes[DAEMON_ROUTES_MAX])
{
    /* With protect_status, the monitoring routes need any known key. */
    unsigned watch = d->cfg->protect_status ? HTTP_ROUTE_NEEDS_KEY : 0;
    /* Probes, metrics and the status page answer while draining; probes never
     * need a key (a load balancer or systemd has none). The page is static
     * (no data in it): its script fetches /status.json. The literal
     * /admin/dlq/redrive comes before /admin/dlq/{id}: the first match names
     * the resource. */
    const struct http_route table[] = {
        {"POST", "/orders", api_orders_post, d->orders, HTTP_SCOPE_ORDERS_WRITE, HTTP_ROUTE_BODY},
        {"GET", "/orders", api_orders_list, d->orders, HTTP_SCOPE_ORDERS_READ, 0},
        {"GET", "/orders/{id}", api_orders_get, d->orders, HTTP_SCOPE_ORDERS_READ, 0},
        {"GET", "/healthz", api_system_healthz, &d->system, HTTP_SCOPE_NONE,
         HTTP_ROUTE_DURING_DRAIN},
        {"GET", "/readyz", api_system_readyz, &d->system, HTTP_SCOPE_NONE, HTTP_ROUTE_DURING_DRAIN},
        {"GET", "/metrics", api_system_metrics, &d->system, HTTP_SCOPE_NONE,
         HTTP_ROUTE_DURING_DRAIN | watch},
        {"GET", "/", api_status_page, &d->status, HTTP_SCOPE_NONE, HTTP_ROUTE_DURING_DRAIN},
        {"GET", "/status.json", api_status_json, &d->status, HTTP_SCOPE_NONE,
         HTTP_ROUTE_DURING_DRAIN | watch},
        {"GET", "/admin/dlq", api_admin_dlq_list, &d->admin, HTTP_SCOPE_ADMIN, 0},
        {"POST", "/admin/dlq/redrive", api_admin_redrive_all, &d->admin, HTTP_SCOPE_ADMIN, 0},
        {"POST", "/admin/dlq/{id}/redrive", api_admin_redrive, &d->admin, HTTP_SCOPE_ADMIN, 0},
        {"DELETE", "/admin/dlq/{id}", api_admin_dlq_delete, &d->admin, HTTP_SCOPE_ADMIN, 0},
    };
    size_t n = sizeof(table) / sizeof(table[0]);
    _Static_assert(sizeof(table) / sizeof(table[0]) <= DAEMON_ROUTES_MAX, "DAEMON_ROUTES_MAX");
    memcpy(routes, table, sizeof(table));
    return n;
}

static unsigned http_thread_count(const struct config *c)
{
    if (c->http_threads > 0)
        return c->http_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 64 ? (unsigned)n : 2;
}

static int start_http(struct daemon *d)
{
    const struct config *c = d->cfg;
    char *cert = NULL, *key = NULL;
    if (c->tls_cert) {
        cert = read_pem(c->tls_cert);
        key = cert ? read_pem(c->tls_key) : NULL;
        if (key == NULL) {
            free(cert);
            return -EINVAL;
        }
    }
    struct http_route routes[DAEMON_ROUTES_MAX];
    size_t nroutes = build_routes(d, routes);
    struct http_options ho = {
        .host = c->listen_host,
        .port = c->listen_port,
        .max_body_bytes = c->max_body_bytes,
        .threads = http_thread_count(c),
        .max_connections = c->max_connections,
        .max_connections_per_ip = c->max_connections_per_ip,
        .timeout_s = (unsigned)((c->request_timeout_ms + 999) / 1000),
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .routes = routes,
        .route_count = nroutes,
        .metrics = d->metrics,
        .authorize = d->auth ? auth_http_authorize : NULL,
        .authorize_ctx = d->auth,
        .rate_limit = ratelimit_http_check,
        .rate_limit_ctx = d->ratelimit,
        .tracing = d->tracing,
    };
    int err = http_server_start(&ho, &d->http);
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    free(cert);
    if (err == 0)
        atomic_store(&d->system.server, d->http);
    return err;
}

static void log_auth_errors(const char *path, const struct auth_errors *errs, const char *what)
{
    for (size_t i = 0; i < errs->count; i++)
        log_error(NULL, "%s: %s:%u: %s", what, path, errs->items[i].line, errs->items[i].message);
}

static int start_access_control(struct daemon *d)
{
    const struct config *c = d->cfg;
    int err;
    if (c->keys_file) {
        struct auth_errors errs = {0};
        err = auth_load(c->keys_file, &d->auth, &errs);
        if (err != 0) {
            log_auth_errors(c->keys_file, &errs, "auth");
            log_error(NULL, "auth: cannot load %s", c->keys_file);
            return err;
        }
        if (auth_key_count(d->auth) == 0)
            log_warn(NULL, "auth: %s has no keys; every API request gets 401", c->keys_file);
    }
    /* Always created, so that a reload can turn rate limiting on. */
    err = ratelimit_new(0, c->rate, c->burst, &d->ratelimit);
    if (err != 0)
        log_error(NULL, "cannot create the rate limiter: %s", strerror(-err));
    return err;
}

static struct retention_options retention_options_of(const struct config *c)
{
    return (struct retention_options){
        .completed_ms = c->retention_completed_ms,
        .dead_letters_ms = c->retention_dead_letters_ms,
    };
}

static struct tracing_options tracing_options_of(const struct config *c)
{
    return (struct tracing_options){
        .otlp_endpoint = c->otlp_endpoint,
        .service_name = c->service_name,
        .sample_ratio = c->sample_ratio,
        .headers_file = c->tracing_headers_file,
    };
}

/* Always a tracer: without an endpoint it records nothing, and a reload may
 * turn it on. */
static int start_tracing(struct daemon *d)
{
    struct tracing_options to = tracing_options_of(d->cfg);
    int err = tracing_start(&to, d->metrics, &d->tracing);
    if (err != 0)
        log_error(NULL, "cannot start tracing: %s", strerror(-err));
    else if (to.otlp_endpoint != NULL)
        log_info(NULL, "tracing: spans to %s, sample_ratio %g", to.otlp_endpoint, to.sample_ratio);
    return err;
}

static int start_retention(struct daemon *d)
{
    struct retention_options ro = retention_options_of(d->cfg);
    int err = retention_start(d->store, d->metrics, &ro, &d->retention);
    if (err != 0)
        log_error(NULL, "cannot start the retention sweeper: %s", strerror(-err));
    return err;
}

static int start_all(struct daemon *d)
{
    if (metrics_new(&d->metrics) != 0)
        return -ENOMEM;
    metrics_set_build_info(d->metrics, ORDERD_VERSION, store_sqlite_version());
    int err = start_tracing(d);
    if (err != 0)
        return err;
    err = open_store(d);
    if (err != 0)
        return err;
    metrics_set_gauge_source(d->metrics, api_system_queue_gauges, d->store);
    d->system.store = d->store;
    d->system.metrics = d->metrics;
    api_status_init(&d->status, d->metrics, d->store);
    if ((err = start_workers(d)) != 0)
        return err;
    struct committer_delivery delivery = {
        .reserve = workers_reserve,
        .unreserve = workers_unreserve,
        .deliver = workers_deliver,
        .arg = d->workers,
        .visibility_timeout_ms = (int64_t)d->cfg->visibility_timeout_ms,
    };
    struct committer_options copts = {
        .max_depth = d->cfg->max_depth,
        .on_commit = workers_wake,
        .on_commit_arg = d->workers,
        .delivery = &delivery,
        .metrics = d->metrics,
    };
    if ((err = committer_start(d->store, &copts, &d->committer)) != 0) {
        log_error(NULL, "cannot start the committer: %s", strerror(-err));
        return err;
    }
    if ((err = start_retention(d)) != 0)
        return err;
    d->admin = (struct api_admin){d->store, workers_wake, d->workers};
    if ((err = api_orders_new(d->store, d->committer, d->metrics, &d->orders)) != 0)
        return err;
    if ((err = start_access_control(d)) != 0)
        return err;
    return start_http(d);
}

/* ---- stop ------------------------------------------------------------------- */

#define REPLY_FLUSH_MS 1000

/*
 * Stop in the order that keeps every pointer valid: the committer first
 * writes what it holds and resumes those requests (a late POST now gets 503
 * from committer_submit, never a freed committer); their replies get a moment
 * to leave; then HTTP stops, so no handler can run against what is freed next.
 */
static void stop_all(struct daemon *d)
{
    retention_stop(d->retention); /* ends its batch: one short transaction */
    d->retention = NULL;
    committer_quiesce(d->committer);
    for (int i = 0; d->http && http_server_in_flight(d->http) > 0 && i < REPLY_FLUSH_MS / 10; i++)
        uv_sleep(10);
    http_server_stop(d->http);
    d->http = NULL;
    auth_free(d->auth);
    d->auth = NULL;
    ratelimit_free(d->ratelimit);
    d->ratelimit = NULL;
    committer_stop(d->committer);
    d->committer = NULL;
    workers_stop(d->workers);
    d->workers = NULL;
    api_orders_free(d->orders);
    d->orders = NULL;
    metrics_set_gauge_source(d->metrics, NULL, NULL);
    store_close(d->store);
    d->store = NULL;
    tracing_stop(d->tracing); /* sends what the others ended, at most TRACING_FLUSH_MS */
    d->tracing = NULL;
    metrics_free(d->metrics);
    d->metrics = NULL;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* ---- drain ------------------------------------------------------------------ */

/*
 * The drain runs on the drain timer. HTTP answers 503 to new work from the
 * signal on, and keeps answering until the drain ends, so that a load
 * balancer in front sees 503 rather than a refused connection:
 *   1. until no request admitted before the signal is open, or for at most
 *      HTTP_DRAIN_TIMEOUT_MS: then stop_intake();
 *   2. until drain_grace has passed since the signal: then finish_drain()
 *      closes the listener and stops the rest.
 */
static void finish_drain(struct daemon *d)
{
    log_info(NULL, "drain: closing the listener");
    stop_all(d);
    close_handle((uv_handle_t *)&d->drain_timer);
    close_handle((uv_handle_t *)&d->housekeeping);
    close_handle((uv_handle_t *)&d->deadlines);
    close_handle((uv_handle_t *)&d->sigterm);
    close_handle((uv_handle_t *)&d->sigint);
    close_handle((uv_handle_t *)&d->sighup);
    log_info(NULL, "stopped cleanly");
}

/*
 * The committer writes what it holds and answers those requests (a later POST
 * gets 503 from it). With no request left open (idle), none can reach the
 * workers any more — a request that arrives now is refused with 503 before
 * any handler runs, or is a probe — so they finish their current message and
 * stop while HTTP still answers. Otherwise they stop after HTTP (stop_all).
 */
static void stop_intake(struct daemon *d, bool idle)
{
    d->intake_stopped = true;
    if (!idle)
        log_warn(NULL,
                 "drain: %u requests still open after %d s; the committer answers those it "
                 "holds, the others are closed with the listener",
                 http_server_in_flight(d->http), HTTP_DRAIN_TIMEOUT_MS / 1000);
    committer_quiesce(d->committer);
    if (!idle)
        return;
    log_info(NULL, "drain: no request in flight; workers finish their current message");
    workers_stop(d->workers);
    d->workers = NULL;
    double left = d->grace_end - ids_monotonic_seconds();
    if (left > 0)
        log_info(NULL, "drain: workers stopped; answering 503 for %.1f s more (drain_grace)",
                 left);
}

static void on_drain_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    if (!d->intake_stopped) {
        bool idle = http_server_in_flight(d->http) == 0;
        if (!idle && ids_monotonic_seconds() < d->drain_deadline)
            return;
        stop_intake(d, idle);
    }
    if (ids_monotonic_seconds() >= d->grace_end)
        finish_drain(d);
}

static void begin_drain(struct daemon *d, const char *why)
{
    double now = ids_monotonic_seconds();
    if (d->draining) {
        if (d->grace_end > now)
            log_info(NULL, "%s again: not waiting for the rest of drain_grace", why);
        d->grace_end = now;
        return;
    }
    d->draining = true;
    d->drain_deadline = now + HTTP_DRAIN_TIMEOUT_MS / 1000.0;
    d->grace_end = now + (double)d->cfg->drain_grace_ms / 1000.0;
    log_info(NULL,
             "%s: draining: new requests get 503 and /readyz 503; the listener stays open "
             "until requests in flight (at most %d s) and the workers' current messages are "
             "done, and for at least %.1f s (drain_grace)",
             why, HTTP_DRAIN_TIMEOUT_MS / 1000, (double)d->cfg->drain_grace_ms / 1000.0);
    notify_send("STOPPING=1");
    http_server_set_draining(d->http);
    int err = uv_timer_start(&d->drain_timer, on_drain_tick, 0, DRAIN_POLL_MS);
    if (err != 0) {
        log_error(NULL, "drain: cannot start its timer (%s); stopping now", uv_strerror(err));
        finish_drain(d);
    }
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    begin_drain(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- reload ----------------------------------------------------------------- */

static bool str_changed(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static void warn_restart_needed(const struct config *old, const struct config *fresh)
{
    if (str_changed(old->listen, fresh->listen) || str_changed(old->tls_cert, fresh->tls_cert) ||
        str_changed(old->tls_key, fresh->tls_key))
        log_warn(NULL, "reload: [server] listen/tls changed; takes effect after a restart");
    if (old->backend != fresh->backend || str_changed(old->storage_path, fresh->storage_path) ||
        old->durability != fresh->durability || str_changed(old->dsn, fresh->dsn))
        log_warn(NULL, "reload: [storage] changed; takes effect after a restart");
    if (old->worker_count != fresh->worker_count ||
        str_changed(old->fulfilment_command, fresh->fulfilment_command) ||
        str_changed(old->fulfilment_url, fresh->fulfilment_url) ||
        str_changed(old->fulfilment_secret_file, fresh->fulfilment_secret_file) ||
        str_changed(old->fulfilment_ca_file, fresh->fulfilment_ca_file) ||
        old->fulfilment_timeout_ms != fresh->fulfilment_timeout_ms ||
        old->fulfilment_concurrency != fresh->fulfilment_concurrency ||
        old->visibility_timeout_ms != fresh->visibility_timeout_ms ||
        old->max_receives != fresh->max_receives || old->backoff_base_ms != fresh->backoff_base_ms ||
        old->backoff_max_ms != fresh->backoff_max_ms || old->max_depth != fresh->max_depth)
        log_warn(NULL, "reload: [queue]/[workers] changed; takes effect after a restart");
}

/* A secret rotation: the same secrets file, read again (its path changing
 * needs a restart, as every [workers] key). */
static void reload_secrets(struct daemon *d, const struct config *fresh)
{
    const char *path = d->cfg->fulfilment_secret_file;
    size_t n = 0;
    if (path == NULL || d->cfg->fulfilment_url == NULL ||
        str_changed(path, fresh->fulfilment_secret_file))
        return;
    if (workers_reload_secrets(d->workers, path, &n) == 0)
        log_info(NULL, "reload: signing fulfilment requests with the %zu secret%s of %s", n,
                 n == 1 ? "" : "s", path);
}

static void reload_retention(struct daemon *d, const struct config *fresh)
{
    if (d->cfg->retention_completed_ms == fresh->retention_completed_ms &&
        d->cfg->retention_dead_letters_ms == fresh->retention_dead_letters_ms)
        return;
    d->cfg->retention_completed_ms = fresh->retention_completed_ms;
    d->cfg->retention_dead_letters_ms = fresh->retention_dead_letters_ms;
    struct retention_options ro = retention_options_of(d->cfg);
    retention_set(d->retention, &ro);
    char completed[32] = "forever", dead[32] = "forever";
    if (ro.completed_ms > 0)
        config_format_duration(ro.completed_ms, completed, sizeof(completed));
    if (ro.dead_letters_ms > 0)
        config_format_duration(ro.dead_letters_ms, dead, sizeof(dead));
    log_info(NULL, "reload: retention keeps completed orders %s, dead letters %s", completed, dead);
}

static void swap_str(char **a, char **b)
{
    char *t = *a;
    *a = *b;
    *b = t;
}

/*
 * [tracing]: endpoint (on, off, elsewhere), ratio, service name, headers. A
 * headers_file is read again on every reload (a rotated token), like the
 * fulfilment secrets. On error the running tracer keeps its options.
 */
static void reload_tracing(struct daemon *d, struct config *fresh)
{
    struct config *c = d->cfg;
    bool endpoint = str_changed(c->otlp_endpoint, fresh->otlp_endpoint);
    bool ratio = c->sample_ratio != fresh->sample_ratio;
    bool name = str_changed(c->service_name, fresh->service_name);
    bool headers = str_changed(c->tracing_headers_file, fresh->tracing_headers_file);
    if (!endpoint && !ratio && !name && !headers && fresh->tracing_headers_file == NULL)
        return;
    struct tracing_options to = tracing_options_of(fresh);
    if (tracing_configure(d->tracing, &to) != 0) {
        log_error(NULL, "reload: [tracing] not applied; tracing goes on as it was");
        return;
    }
    if (endpoint && fresh->otlp_endpoint == NULL)
        log_info(NULL, "reload: tracing off (was to %s)", c->otlp_endpoint);
    else if (endpoint)
        log_info(NULL, "reload: tracing on: spans to %s (was %s)", fresh->otlp_endpoint,
                 c->otlp_endpoint ? c->otlp_endpoint : "off");
    if (ratio)
        log_info(NULL, "reload: tracing sample_ratio %g (was %g)", fresh->sample_ratio,
                 c->sample_ratio);
    if (name)
        log_info(NULL, "reload: tracing service.name %s",
                 fresh->service_name ? fresh->service_name : "orderd");
    if (fresh->tracing_headers_file != NULL)
        log_info(NULL, "reload: tracing sends the headers of %s", fresh->tracing_headers_file);
    else if (headers)
        log_info(NULL, "reload: tracing sends no extra headers");
    swap_str(&c->otlp_endpoint, &fresh->otlp_endpoint); /* config_free(fresh) frees the old */
    swap_str(&c->service_name, &fresh->service_name);
    swap_str(&c->tracing_headers_file, &fresh->tracing_headers_file);
    c->sample_ratio = fresh->sample_ratio;
}

static void reload(struct daemon *d)
{
    notify_send("RELOADING=1");
    struct config fresh;
    struct config_errors errs = {0};
    int err = config_load(d->config_path, d->envp, &fresh, &errs);
    if (err != 0) {
        char line[WHY_MAX + PATH_MAX];
        for (size_t i = 0; i < errs.count; i++) {
            config_error_format(&errs.items[i], d->config_path, line, sizeof(line));
            log_error(NULL, "reload: %s", line);
        }
        log_error(NULL, "reload: %s has errors; keeping the running config", d->config_path);
        config_free(&fresh);
        notify_send("READY=1");
        return;
    }
    warn_restart_needed(d->cfg, &fresh);
    if (d->cfg->protect_status != fresh.protect_status)
        log_warn(NULL, "reload: [auth] protect_status changed; takes effect after a restart");
    if ((d->auth == NULL) != (fresh.keys_file == NULL))
        log_warn(NULL, "reload: turning auth on or off takes effect after a restart");
    else if (d->auth) {
        struct auth_errors aerrs = {0};
        if (auth_reload(d->auth, fresh.keys_file, &aerrs) != 0) {
            log_auth_errors(fresh.keys_file, &aerrs, "reload");
            log_error(NULL, "reload: %s has errors; keeping the running keys", fresh.keys_file);
        }
    }
    reload_secrets(d, &fresh);
    if (ratelimit_configure(d->ratelimit, fresh.rate, fresh.burst) != 0)
        log_error(NULL, "reload: rate limits not applied");
    log_configure(fresh.log_level, fresh.log_format);
    d->cfg->log_level = fresh.log_level;
    d->cfg->log_format = fresh.log_format;
    d->cfg->rate = fresh.rate;
    d->cfg->burst = fresh.burst;
    d->cfg->drain_grace_ms = fresh.drain_grace_ms; /* read at the next SIGTERM */
    reload_retention(d, &fresh);
    reload_tracing(d, &fresh);
    config_free(&fresh);
    log_info(NULL, "reload: applied %s (log level %s)", d->config_path,
             log_level_name(d->cfg->log_level));
    notify_send("READY=1");
}

static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    struct daemon *d = h->data;
    if (!d->draining)
        reload(d);
}

static void on_housekeeping(uv_timer_t *t)
{
    struct daemon *d = t->data;
    uint64_t pruned = 0;
    if (store_idempotency_prune(d->store, ids_now_ms(), &pruned) == STORE_OK && pruned > 0)
        log_info(NULL, "housekeeping: pruned %llu expired idempotency keys",
                 (unsigned long long)pruned);
}

static void on_deadlines(uv_timer_t *t)
{
    struct daemon *d = t->data;
    if (d->http)
        http_server_enforce_deadlines(d->http);
}

/* ---- run -------------------------------------------------------------------- */

static int init_loop(struct daemon *d)
{
    int err = uv_loop_init(&d->loop);
    if (err != 0)
        return err;
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    uv_timer_init(&d->loop, &d->housekeeping);
    uv_timer_init(&d->loop, &d->drain_timer);
    uv_timer_init(&d->loop, &d->deadlines);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    d->housekeeping.data = d->drain_timer.data = d->deadlines.data = d;
    if ((err = uv_signal_start(&d->sigterm, on_stop_signal, SIGTERM)) != 0 ||
        (err = uv_signal_start(&d->sigint, on_stop_signal, SIGINT)) != 0 ||
        (err = uv_signal_start(&d->sighup, on_sighup, SIGHUP)) != 0)
        return err;
    if ((err = uv_timer_start(&d->deadlines, on_deadlines, DEADLINES_MS, DEADLINES_MS)) != 0)
        return err;
    return uv_timer_start(&d->housekeeping, on_housekeeping, HOUSEKEEPING_MS, HOUSEKEEPING_MS);
}

static void close_all_handles(uv_handle_t *h, void *arg)
{
    (void)arg;
    close_handle(h);
}

int daemon_run(const char *config_path, struct config *cfg, char *const *envp)
{
    struct daemon d = {.config_path = config_path, .cfg = cfg, .envp = envp};
    int err = init_loop(&d);
    if (err != 0) {
        fprintf(stderr, "orderd: cannot start the event loop: %s\n", uv_strerror(err));
        return 2;
    }
    err = start_all(&d);
    if (err != 0) {
        stop_all(&d);
        uv_walk(&d.loop, close_all_handles, NULL);
        uv_run(&d.loop, UV_RUN_DEFAULT);
        uv_loop_close(&d.loop);
        return 2;
    }
    log_info(NULL, "orderd %s listening on %s:%u (database %s, durability %s, %u workers)",
             ORDERD_VERSION, cfg->listen_host, http_server_port(d.http),
             cfg->backend == STORE_BACKEND_POSTGRES ? "postgres (dsn)" : cfg->storage_path,
             cfg->durability == DURABILITY_FULL ? "full" : "normal", cfg->worker_count);
    notify_send("READY=1");
    uv_run(&d.loop, UV_RUN_DEFAULT);
    /* Stopped: a late second SIGTERM must not turn a clean exit into 143. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    uv_loop_close(&d.loop);
    return 0;
}
