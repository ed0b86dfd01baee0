/*
 * http.c — the embedded HTTP server (see http.h).
 *
 * Threading model, chosen on purpose: MHD's internal epoll thread pool
 * (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, threads = CPUs) with
 * MHD_ALLOW_SUSPEND_RESUME. A pool thread parses, validates and routes; a
 * POST /orders is then suspended while the committer makes it durable, so a
 * handful of threads serve hundreds of connections that wait on fsync. A
 * thread per connection would spend a stack per waiting client; a single
 * thread would serialise JSON parsing.
 *
 * What this file owns: binding the listen socket, the route table, limits on
 * bodies, the request state (struct http_request) from the first callback to
 * MHD's completion notice, the common reply headers, problem+json, and the
 * HTTP metrics, the request's SERVER span (tracing.h: begun with the request,
 * a child of its traceparent, ended once the reply is sent), and the check of
 * the TLS certificate and key it will serve with (read as PEM, parsed and
 * matched by GnuTLS, libmicrohttpd's own TLS library). It knows nothing about
 * orders.
 *
 * Threads: every function here runs on an MHD pool thread, except
 * http_request_resume() and the http_reply_*() calls made on a suspended
 * request (any thread; MHD is told through its inter-thread channel),
 * start/stop/draining (loop thread), and the TLS checks (any thread).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bounds.h"
#include "http.h"
#include "ids.h"
#include "log.h"
#include "ratelimit.h"

#define REPLY_HEADERS_MAX 8
#define SPAN_NAMES_MAX 64 /* distinct "METHOD /route" span names in a process */
#define SPAN_NAME_MAX 96

/* A route as served: the caller's descriptor, its id in the HTTP metrics and
 * its span names ("GET /orders/{id}", and "HEAD /orders/{id}" for a GET). */
struct served_route {
    struct http_route route;
    unsigned metric;
    const char *span_name;
    const char *span_name_head;
};

struct reply_header {
    char *name;
    char *value;
};

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    const struct http_route *route;  /* NULL: answered before routing */
    unsigned metric;                 /* the matched resource's metrics id, or "other" */
    bool during_drain;               /* the matched resource answers while draining */
    char method[16];
    char *path;
    char param[ID_ULID_LEN * 4];
    char request_id[REQUEST_ID_MAX + 1];
    struct tracing_span span;        /* SERVER; span.ctx is the reply's traceparent */
    char client[HTTP_CLIENT_MAX + 1];
    double started;

    char *body;
    size_t body_len;
    bool body_too_large;

    /* reply */
    bool replied;
    unsigned status;
    char *reply_body;
    size_t reply_len;
    enum MHD_ResponseMemoryMode reply_mode;
    const char *content_type;
    struct reply_header headers[REPLY_HEADERS_MAX];
    size_t header_count;

    bool suspended;               /* between suspend and the callback after resume */
    bool queued;                  /* MHD_queue_response done */
};

/*
 * Deadlines MHD does not keep (its timeout restarts on every byte): a
 * connection must deliver a complete request within request_timeout of
 * connecting or of the end of its previous request, and its body within
 * request_timeout of its headers. The loop thread's timer calls
 * http_server_enforce_deadlines(), which shuts down the socket of a late
 * connection; MHD then closes it as if the client had gone. Entries are added
 * and removed under watch_lock by MHD's connection notifications, which MHD
 * sends before it closes the descriptor, so a shut-down fd is never reused.
 */
struct conn_watch {
    struct conn_watch *prev, *next;
    int fd;
    _Atomic double since;          /* connect, or the end of the last request */
    atomic_bool receiving;         /* a request is being read (headers done) */
    atomic_bool waiting;           /* between requests: headers not yet complete */
};

struct http_server {
    struct MHD_Daemon *mhd;
    int listen_fd;
    uint16_t port;
    uint64_t max_body_bytes;
    struct served_route *routes;
    size_t route_count;
    struct metrics *metrics;
    http_authorize_fn authorize;
    void *authorize_ctx;
    http_rate_limit_fn rate_limit;
    void *rate_limit_ctx;
    struct tracing *tracing;
    char *tls_cert;
    char *tls_key;
    atomic_bool draining;
    atomic_uint in_flight;
    double request_timeout_s;
    pthread_mutex_t watch_lock;    /* guards the watch list */
    struct conn_watch watch_head;  /* sentinel of a circular list */
    bool watch_lock_ready;
    atomic_ulong deadline_closes;
};

/* ---- accessors ------------------------------------------------------------ */

const char *http_request_method(const struct http_request *req) { return req->method; }
const char *http_request_path(const struct http_request *req) { return req->path; }
const char *http_request_id(const struct http_request *req) { return req->request_id; }

const char *http_request_param(const struct http_request *req)
{
    return req->param[0] ? req->param : NULL;
}

const struct trace_context *http_request_trace(const struct http_request *req)
{
    return &req->span.ctx;
}

struct tracing_span *http_request_span(struct http_request *req) { return &req->span; }

struct tracing *http_request_tracing(const struct http_request *req) { return req->srv->tracing; }

const char *http_request_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_request_query(const struct http_request *req, const char *name, bool *present)
{
    const char *v = NULL;
    size_t len = 0;
    enum MHD_Result found =
        MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &len);
    if (present)
        *present = found == MHD_YES;
    return found == MHD_YES ? (v ? v : "") : NULL;
}

struct query_walk {
    void (*fn)(void *arg, const char *name);
    void *arg;
};

static enum MHD_Result query_walk_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)value;
    struct query_walk *w = cls;
    w->fn(w->arg, key);
    return MHD_YES;
}

void http_request_query_names(const struct http_request *req,
                              void (*fn)(void *arg, const char *name), void *arg)
{
    struct query_walk w = {fn, arg};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_walk_cb, &w);
}

const char *http_request_body(const struct http_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

/* ---- replies -------------------------------------------------------------- */

static void reply_reset_body(struct http_request *req)
{
    if (req->reply_mode == MHD_RESPMEM_MUST_FREE)
        free(req->reply_body);
    req->reply_body = NULL;
    req->reply_len = 0;
    req->reply_mode = MHD_RESPMEM_PERSISTENT;
}

/* Replaces any reply set before with this one. */
static void set_reply(struct http_request *req, unsigned status, const char *content_type,
                      char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    reply_reset_body(req);
    req->replied = true;
    req->status = status;
    req->content_type = content_type;
    req->reply_body = body;
    req->reply_len = len;
    req->reply_mode = mode;
}

void http_reply_json(struct http_request *req, unsigned status, char *json)
{
    if (json == NULL) {
        static const char oom[] = "{\"title\":\"out of memory\"}";
        set_reply(req, 500, "application/json", (char *)oom, sizeof(oom) - 1,
                  MHD_RESPMEM_PERSISTENT);
        return;
    }
    set_reply(req, status, "application/json", json, strlen(json), MHD_RESPMEM_MUST_FREE);
}

void http_reply_owned(struct http_request *req, unsigned status, const char *content_type,
                      char *body, size_t len)
{
    set_reply(req, status, content_type, body, len, MHD_RESPMEM_MUST_FREE);
}

void http_reply_static(struct http_request *req, unsigned status, const char *content_type,
                       const char *body, size_t len)
{
    set_reply(req, status, content_type, (char *)body, len, MHD_RESPMEM_PERSISTENT);
}

void http_reply_header(struct http_request *req, const char *name, const char *value)
{
    if (req->header_count >= REPLY_HEADERS_MAX) {
        log_error(NULL, "http: %s: too many reply headers, dropped %s", __func__, name);
        return;
    }
    struct reply_header *h = &req->headers[req->header_count];
    h->name = strdup(name);
    h->value = strdup(value);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return;
    }
    req->header_count++;
}

static const char *status_title(unsigned status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

void http_reply_problem(struct http_request *req, unsigned status, const char *title,
                        const char *detail, const struct http_field_error *errors, size_t n_errors)
{
    char type[64];
    snprintf(type, sizeof(type), "https://orderd.dev/problems/%u", status);
    json_t *p = json_object();
    if (p == NULL) {
        http_reply_json(req, 500, NULL);
        return;
    }
    json_object_set_new(p, "type", json_string(type));
    json_object_set_new(p, "title", json_string(title ? title : status_title(status)));
    json_object_set_new(p, "status", json_integer(status));
    json_object_set_new(p, "detail", json_string(detail ? detail : ""));
    json_object_set_new(p, "instance", json_string(req->path ? req->path : "/"));
    json_object_set_new(p, "request_id", json_string(req->request_id));
    if (errors != NULL && n_errors > 0) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n_errors; i++)
            json_array_append_new(arr, json_pack("{s:s, s:s}", "field", errors[i].field,
                                                 "message", errors[i].message));
        json_object_set_new(p, "errors", arr);
    }
    char *text = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(p);
    http_reply_json(req, status, text);
    req->content_type = "application/problem+json";
}

/* ---- request state -------------------------------------------------------- */

/* Copies src into dst[size], cut to size - 1 bytes (no printf: per request). */
static void copy_bounded(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool request_id_acceptable(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static void request_identify(struct http_request *req)
{
    const char *given = http_request_header(req, "X-Request-Id");
    if (given && request_id_acceptable(given))
        copy_bounded(req->request_id, sizeof(req->request_id), given);
    else if (ids_ulid_new(req->request_id) != 0)
        snprintf(req->request_id, sizeof(req->request_id), "unknown");
}

/* ---- the SERVER span ------------------------------------------------------- */

/*
 * Span names of routes live as long as the process, not the server: a span
 * is exported after its request ended, possibly after the server stopped
 * (the tracer stops last). Interned once per distinct name, under a lock
 * taken only while a server starts.
 */
static char span_names[SPAN_NAMES_MAX][SPAN_NAME_MAX];
static size_t span_names_used;
static pthread_mutex_t span_names_lock = PTHREAD_MUTEX_INITIALIZER;

/* HTTP's methods as OpenTelemetry knows them; NULL for any other. */
static const char *method_known(const char *method)
{
    static const char *const known[] = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
                                        "PATCH", "OPTIONS", "TRACE", "CONNECT"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return NULL;
}

/* "METHOD /pattern", interned; NULL when it does not fit (the span is then
 * named by its method alone). */
static const char *span_name_intern(const char *method, const char *pattern)
{
    char name[SPAN_NAME_MAX];
    int n = snprintf(name, sizeof(name), "%s %s", method, pattern);
    if (n < 0 || (size_t)n >= sizeof(name))
        return NULL;
    const char *found = NULL;
    pthread_mutex_lock(&span_names_lock);
    for (size_t i = 0; i < span_names_used && found == NULL; i++)
        if (strcmp(span_names[i], name) == 0)
            found = span_names[i];
    if (found == NULL && span_names_used < SPAN_NAMES_MAX) {
        memcpy(span_names[span_names_used], name, (size_t)n + 1);
        found = span_names[span_names_used++];
    }
    pthread_mutex_unlock(&span_names_lock);
    return found;
}

/* The peer's address for client.address, without printf (this runs for each
 * sampled request): a.b.c.d by hand, IPv6 by inet_ntop; "" when unknown. */
static void span_peer(const struct http_request *req, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    const unsigned char *v4 = NULL;
    out[0] = '\0';
    if (sa != NULL && sa->sa_family == AF_INET) {
        v4 = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (!IN6_IS_ADDR_V4MAPPED(a)) {
            if (inet_ntop(AF_INET6, a, out, (socklen_t)size) == NULL)
                out[0] = '\0';
            return;
        }
        v4 = &a->s6_addr[12];
    }
    if (v4 == NULL || size < INET_ADDRSTRLEN)
        return;
    char *p = out;
    for (int i = 0; i < 4; i++) {
        unsigned b = v4[i];
        if (b >= 100)
            *p++ = (char)('0' + b / 100);
        if (b >= 10)
            *p++ = (char)('0' + b / 10 % 10);
        *p++ = (char)('0' + b % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

/*
 * Begins the request's SERVER span: a child of a valid incoming traceparent
 * (whose sampled flag it keeps), else the root of a new trace that the
 * tracer's ratio samples. Named by the method until the route is known.
 */
static void span_begin(struct http_request *req)
{
    struct trace_context incoming;
    const char *tp = http_request_header(req, "traceparent");
    bool given = tp != NULL && trace_parse(tp, &incoming) == 0;
    const char *known = method_known(req->method);
    struct tracing_span *s = &req->span;
    tracing_span_begin(req->srv->tracing, s, given ? &incoming : NULL, known ? known : "HTTP",
                       TRACING_SERVER);
    if (!s->recording)
        return; /* attributes only for spans that are kept */
    tracing_span_attr_str(s, "http.request.method", known ? known : "_OTHER");
    tracing_span_attr_str(s, "url.path", req->path);
    char peer[INET6_ADDRSTRLEN];
    span_peer(req, peer, sizeof(peer));
    if (peer[0] != '\0')
        tracing_span_attr_str(s, "client.address", peer);
}

/* Completed: the route, the status, and the span goes to the exporter. */
static void span_end(struct http_request *req, unsigned status)
{
    struct tracing_span *s = &req->span;
    if (s->recording) {
        if (req->route != NULL)
            tracing_span_attr_str(s, "http.route", req->route->pattern);
        if (req->queued)
            tracing_span_attr_int(s, "http.response.status_code", status);
        if (status >= 500 && req->queued) {
            char why[48];
            snprintf(why, sizeof(why), "%u %s", status, status_title(status));
            tracing_span_error(s, why);
        } else if (!req->queued) {
            tracing_span_error(s, "the connection ended before the reply was sent");
        }
    }
    tracing_span_end(req->srv->tracing, s);
}

static void client_address(struct http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    ratelimit_client_of_address(ci ? ci->client_addr : NULL, req->client, sizeof(req->client));
}

static struct conn_watch *conn_watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static struct http_request *request_new(struct http_server *srv, struct MHD_Connection *conn,
                                        const char *url, const char *method)
{
    struct http_request *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->path = strdup(url);
    if (req->path == NULL) {
        free(req);
        return NULL;
    }
    req->srv = srv;
    req->conn = conn;
    req->metric = METRICS_ROUTE_OTHER;
    req->started = ids_monotonic_seconds();
    req->reply_mode = MHD_RESPMEM_PERSISTENT;
    copy_bounded(req->method, sizeof(req->method), method);
    request_identify(req);
    span_begin(req);
    atomic_fetch_add(&srv->in_flight, 1);
    struct conn_watch *w = conn_watch_of(conn);
    if (w) {
        atomic_store(&w->since, req->started);
        atomic_store(&w->waiting, false);
        atomic_store(&w->receiving, true);
    }
    return req;
}

static void request_free(struct http_request *req)
{
    reply_reset_body(req);
    for (size_t i = 0; i < req->header_count; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    free(req->body);
    free(req->path);
    free(req);
}

/* ---- routing -------------------------------------------------------------- */

/* Matches path against pattern; captures {id} into param ("" without one). */
static bool pattern_match(const char *pattern, const char *path, char *param, size_t size)
{
    param[0] = '\0'; /* a pattern without {id}, or what an earlier one left */
    while (*pattern && *path) {
        if (strncmp(pattern, "{id}", 4) == 0) {
            size_t seg = strcspn(path, "/");
            if (seg == 0 || seg >= size)
                return false;
            memcpy(param, path, seg);
            param[seg] = '\0';
            path += seg;
            pattern += 4;
            continue;
        }
        if (*pattern != *path)
            return false;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

static bool method_matches(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/*
 * Finds the route for method+path. The first pattern that matches the path
 * names the resource; when none of its methods fits, *allow lists them (405).
 */
static const struct http_route *route_find(const struct http_server *srv, struct http_request *req,
                                           char *allow, size_t allow_size)
{
    const char *resource = NULL;
    char param[sizeof(req->param)];
    allow[0] = '\0';
    for (size_t i = 0; i < srv->route_count; i++) {
        const struct http_route *r = &srv->routes[i].route;
        if (resource != NULL && strcmp(resource, r->pattern) != 0)
            continue;
        if (!pattern_match(r->pattern, req->path, param, sizeof(param)))
            continue;
        resource = r->pattern;
        req->metric = srv->routes[i].metric;
        req->during_drain = (r->flags & HTTP_ROUTE_DURING_DRAIN) != 0;
        if (method_matches(r->method, req->method)) {
            memcpy(req->param, param, sizeof(param));
            const char *name = strcmp(req->method, "HEAD") == 0 ? srv->routes[i].span_name_head
                                                                : srv->routes[i].span_name;
            if (name != NULL)
                req->span.name = name;
            return r;
        }
        size_t used = strlen(allow);
        snprintf(allow + used, allow_size - used, "%s%s%s", used ? ", " : "", r->method,
                 strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
    }
    return NULL;
}

/* ---- queueing the reply ---------------------------------------------------- */

static enum MHD_Result queue_reply(struct http_request *req)
{
    if (!req->replied) {
        log_error(NULL, "http: %s %s: handler set no reply", req->method, req->path);
        http_reply_problem(req, 500, NULL, "the handler produced no reply", NULL, 0);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(req->reply_len, req->reply_body, req->reply_mode);
    if (resp == NULL)
        return MHD_NO;
    /* MHD owns a MUST_FREE buffer now. */
    req->reply_body = NULL;
    req->reply_mode = MHD_RESPMEM_PERSISTENT;

    char traceparent[TRACEPARENT_LEN + 1];
    trace_format(&req->span.ctx, traceparent);
    bool ok = MHD_add_response_header(resp, "Content-Type", req->content_type) == MHD_YES &&
              MHD_add_response_header(resp, "X-Request-Id", req->request_id) == MHD_YES &&
              MHD_add_response_header(resp, "traceparent", traceparent) == MHD_YES &&
              MHD_add_response_header(resp, "Cache-Control", "no-store") == MHD_YES;
    for (size_t i = 0; ok && i < req->header_count; i++)
        ok = MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value) == MHD_YES;
    if (ok && atomic_load(&req->srv->draining))
        ok = MHD_add_response_header(resp, "Connection", "close") == MHD_YES;
    if (!ok)
        log_error(NULL, "http: %s: cannot add a reply header", __func__);
    enum MHD_Result r = MHD_queue_response(req->conn, req->status, resp);
    MHD_destroy_response(resp);
    req->queued = true;
    return r;
}

static void reply_retry_after(struct http_request *req, unsigned status, const char *title,
                              const char *detail, unsigned seconds)
{
    char v[16];
    snprintf(v, sizeof(v), "%u", seconds);
    http_reply_header(req, "Retry-After", v);
    http_reply_problem(req, status, title, detail, NULL, 0);
}

/* ---- the first callback: route, limits, access ---------------------------- */

static bool content_type_is_json(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen("application/json");
    if (strncasecmp(ct, "application/json", n) != 0)
        return false;
    ct += n;
    while (*ct == ' ')
        ct++;
    return *ct == '\0' || *ct == ';';
}

static void reply_too_large(struct http_request *req)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "the body must be at most %llu bytes",
             (unsigned long long)req->srv->max_body_bytes);
    http_reply_problem(req, 413, NULL, detail, NULL, 0);
}

/*
 * A declared body over max_body_bytes. Answered at once, the 413 is often
 * lost: libmicrohttpd closes a connection with unread bytes, the kernel then
 * resets it, and a client still sending (or not yet reading) sees the reset
 * instead of the answer (curl: exit 55 or 56). So a body up to
 * HTTP_DISCARD_BODY_MAX is read and thrown away first (body_append keeps
 * nothing once body_too_large is set) and the 413 follows it; the connection
 * then stays open. A larger one, or a client waiting for "100 Continue"
 * before it sends anything, gets the 413 at once.
 */
static void refuse_large_body(struct http_request *req, unsigned long long declared)
{
    const char *expect = http_request_header(req, "Expect");
    bool waits = expect != NULL && strcasecmp(expect, "100-continue") == 0;
    if (!waits && declared <= HTTP_DISCARD_BODY_MAX) {
        req->body_too_large = true;
        return;
    }
    reply_too_large(req);
}

/* Checks that need only the headers. Sets a reply when the request stops here. */
static void request_admit(struct http_server *srv, struct http_request *req)
{
    char allow[128];
    req->route = route_find(srv, req, allow, sizeof(allow));
    /* Routes flagged HTTP_ROUTE_DURING_DRAIN (health, readiness, metrics, the
     * status page) keep answering, so operators and probes can watch the drain. */
    if (atomic_load(&srv->draining) && !req->during_drain) {
        reply_retry_after(req, 503, "Service Unavailable", "orderd is shutting down",
                          HTTP_RETRY_AFTER_S);
        return;
    }
    if (req->route == NULL) {
        if (allow[0] != '\0') {
            http_reply_header(req, "Allow", allow);
            http_reply_problem(req, 405, NULL, "method not allowed on this resource", NULL, 0);
        } else {
            http_reply_problem(req, 404, NULL, "no such resource", NULL, 0);
        }
        return;
    }
    const struct http_route *r = req->route;
    /* Named only where a name counts: inet_ntop is a printf per request. */
    if (r->scope != HTTP_SCOPE_NONE && (srv->authorize != NULL || srv->rate_limit != NULL))
        client_address(req);
    /* NEEDS_KEY: a monitoring route behind any known key (never rate-limited) */
    bool needs_key = (r->flags & HTTP_ROUTE_NEEDS_KEY) != 0;
    if ((r->scope != HTTP_SCOPE_NONE || needs_key) && srv->authorize != NULL) {
        unsigned code = srv->authorize(srv->authorize_ctx, http_request_header(req, "Authorization"),
                                       r->scope, req->client, sizeof(req->client));
        if (code == 401) {
            http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"orderd\"");
            http_reply_problem(req, 401, NULL, "a valid API key is required", NULL, 0);
            return;
        }
        if (code != 0) {
            http_reply_problem(req, 403, NULL, "this API key lacks the scope for this route",
                               NULL, 0);
            return;
        }
    }
    if (r->scope != HTTP_SCOPE_NONE && srv->rate_limit != NULL) {
        unsigned wait = srv->rate_limit(srv->rate_limit_ctx, req->client);
        if (wait > 0) {
            reply_retry_after(req, 429, NULL, "rate limit exceeded", wait);
            return;
        }
    }
    if (!(r->flags & HTTP_ROUTE_BODY))
        return;
    const char *cl = http_request_header(req, "Content-Length");
    if (cl != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && *end == '\0' && n > srv->max_body_bytes) {
            refuse_large_body(req, n);
            return;
        }
    }
    if (!content_type_is_json(http_request_header(req, "Content-Type")))
        http_reply_problem(req, 415, NULL, "the body must be application/json", NULL, 0);
}

/* Appends a chunk of the body; past the limit stops keeping it (413 later). */
static void body_append(struct http_server *srv, struct http_request *req, const char *data,
                        size_t size)
{
    if (req->body_too_large)
        return;
    if (req->body_len + size > srv->max_body_bytes) {
        req->body_too_large = true;
        free(req->body);
        req->body = NULL;
        req->body_len = 0;
        return;
    }
    char *grown = realloc(req->body, req->body_len + size + 1);
    if (grown == NULL) {
        req->body_too_large = true; /* answered as 413: we cannot hold it */
        return;
    }
    memcpy(grown + req->body_len, data, size);
    req->body = grown;
    req->body_len += size;
    req->body[req->body_len] = '\0';
}

/* The whole request is in: from here on no read deadline applies. */
static void request_received(struct http_request *req)
{
    struct conn_watch *w = conn_watch_of(req->conn);
    if (w)
        atomic_store(&w->receiving, false);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct http_server *srv = cls;
    struct http_request *req = *con_cls;

    if (req == NULL) {
        req = request_new(srv, conn, url, method);
        if (req == NULL)
            return MHD_NO;
        *con_cls = req;
        request_admit(srv, req);
        if (!req->replied)
            return MHD_YES;
        request_received(req);
        return queue_reply(req);
    }
    if (*upload_data_size > 0) {
        if (!req->queued && req->route && (req->route->flags & HTTP_ROUTE_BODY))
            body_append(srv, req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->queued)
        return MHD_YES;
    if (req->suspended) {
        /* Resumed: the reply was set by the thread that resumed us. */
        req->suspended = false;
        return queue_reply(req);
    }
    request_received(req);
    if (req->body_too_large) {
        reply_too_large(req);
        return queue_reply(req);
    }
    req->route->handler(req, req->route->ctx);
    if (req->suspended)
        return MHD_YES;
    return queue_reply(req);
}

void http_request_suspend(struct http_request *req)
{
    assert(!req->suspended);
    req->suspended = true;
    MHD_suspend_connection(req->conn);
}

void http_request_resume(struct http_request *req)
{
    assert(req->suspended && req->replied);
    MHD_resume_connection(req->conn);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_request *req = *con_cls;
    if (req == NULL)
        return;
    double took = ids_monotonic_seconds() - req->started;
    unsigned status = req->queued ? req->status : 499; /* client went away first */
    metrics_http_observe(srv->metrics, req->metric, status, took);
    span_end(req, status);
    struct log_ctx lc = {req->request_id, req->span.ctx.trace_id, NULL, req->span.ctx.span_id};
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug(&lc, "http: %s %s ended early (%d)", req->method, req->path, (int)toe);
    if (status >= 500)
        log_warn(&lc, "http: %s %s -> %u in %.3f ms", req->method, req->path, status, took * 1e3);
    else
        log_debug(&lc, "http: %s %s -> %u in %.3f ms", req->method, req->path, status, took * 1e3);
    struct conn_watch *w = conn_watch_of(conn);
    if (w) {
        atomic_store(&w->receiving, false);
        atomic_store(&w->since, ids_monotonic_seconds());
        atomic_store(&w->waiting, true);
    }
    request_free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct conn_watch *w = calloc(1, sizeof(*w));
        if (w == NULL || ci == NULL) {
            free(w);
            return; /* unwatched: MHD's idle timeout still applies */
        }
        w->fd = ci->connect_fd;
        atomic_init(&w->since, ids_monotonic_seconds());
        atomic_init(&w->waiting, true);
        atomic_init(&w->receiving, false);
        pthread_mutex_lock(&srv->watch_lock);
        w->next = srv->watch_head.next;
        w->prev = &srv->watch_head;
        w->next->prev = w;
        srv->watch_head.next = w;
        pthread_mutex_unlock(&srv->watch_lock);
        *socket_context = w;
        return;
    }
    struct conn_watch *w = *socket_context;
    if (w == NULL)
        return;
    pthread_mutex_lock(&srv->watch_lock);
    w->prev->next = w->next;
    w->next->prev = w->prev;
    pthread_mutex_unlock(&srv->watch_lock);
    free(w);
    *socket_context = NULL;
}

void http_server_enforce_deadlines(struct http_server *srv)
{
    double now = ids_monotonic_seconds();
    unsigned long closed = 0;
    pthread_mutex_lock(&srv->watch_lock);
    for (struct conn_watch *w = srv->watch_head.next; w != &srv->watch_head; w = w->next) {
        bool late = (atomic_load(&w->waiting) || atomic_load(&w->receiving)) &&
                    now - atomic_load(&w->since) > srv->request_timeout_s;
        if (late && shutdown(w->fd, SHUT_RDWR) == 0)
            closed++;
    }
    pthread_mutex_unlock(&srv->watch_lock);
    if (closed > 0) {
        atomic_fetch_add(&srv->deadline_closes, closed);
        log_debug(NULL, "http: closed %lu connections that sent no complete request in %.0f s",
                  closed, srv->request_timeout_s);
    }
}

unsigned long http_server_deadline_closes(const struct http_server *srv)
{
    return atomic_load(&srv->deadline_closes);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn(NULL, "http: libmicrohttpd: %s", line);
}

/* ---- listen socket -------------------------------------------------------- */

static int bind_listen(const char *host, uint16_t port, int *fd_out, uint16_t *port_out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        log_error(NULL, "http: cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    int err = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            err = -errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
            err = -errno;
            close(fd);
            continue;
        }
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
        *fd_out = fd;
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    log_error(NULL, "http: cannot listen on %s:%u: %s", host, port, strerror(-err));
    return err;
}

/* ---- TLS material ----------------------------------------------------------- */

/* Reads fd to its end, at most HTTP_TLS_PEM_MAX bytes, into buf[HTTP_TLS_PEM_MAX + 1]. */
static int read_bounded(int fd, char *buf, size_t *len)
{
    *len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + *len, HTTP_TLS_PEM_MAX + 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        *len += (size_t)n;
        if (*len > HTTP_TLS_PEM_MAX)
            return -EFBIG;
    }
}

int http_tls_read_pem(const char *path, char **out, char *why, size_t why_size)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        snprintf(why, why_size, "cannot read %s: %s", path, strerror(err));
        return -err;
    }
    size_t len = 0;
    char *buf = malloc(HTTP_TLS_PEM_MAX + 1);
    int err = buf ? read_bounded(fd, buf, &len) : -ENOMEM;
    close(fd);
    if (err == 0 && len == 0)
        err = -ENODATA;
    if (err == 0) {
        buf[len] = '\0';
        *out = buf;
        return 0;
    }
    if (err == -EFBIG)
        snprintf(why, why_size, "%s is larger than %d bytes: not a PEM file", path,
                 HTTP_TLS_PEM_MAX);
    else if (err == -ENODATA)
        snprintf(why, why_size, "%s is empty", path);
    else
        snprintf(why, why_size, "cannot read %s: %s", path, strerror(-err));
    if (buf != NULL) {
        explicit_bzero(buf, len);
        free(buf);
    }
    return err;
}

static gnutls_datum_t pem_datum(const char *pem)
{
    return (gnutls_datum_t){(unsigned char *)pem, (unsigned)strlen(pem)};
}

static bool is_certificate(const char *pem, char *why, size_t why_size)
{
    gnutls_x509_crt_t *crts = NULL;
    unsigned n = 0;
    gnutls_datum_t d = pem_datum(pem);
    int rc = gnutls_x509_crt_list_import2(&crts, &n, &d, GNUTLS_X509_FMT_PEM, 0);
    for (unsigned i = 0; rc >= 0 && i < n; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);
    if (rc >= 0 && n > 0)
        return true;
    snprintf(why, why_size, "no PEM certificate in it (%s)",
             rc < 0 ? gnutls_strerror(rc) : "empty list");
    return false;
}

static bool is_private_key(const char *pem, char *why, size_t why_size)
{
    gnutls_x509_privkey_t key;
    int rc = gnutls_x509_privkey_init(&key);
    if (rc >= 0) {
        gnutls_datum_t d = pem_datum(pem);
        rc = gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
        gnutls_x509_privkey_deinit(key);
    }
    if (rc >= 0)
        return true;
    snprintf(why, why_size, "no unencrypted PEM private key in it (%s)", gnutls_strerror(rc));
    return false;
}

enum http_tls_fault http_tls_check(const char *cert_pem, const char *key_pem, char *why,
                                   size_t why_size)
{
    if (!is_certificate(cert_pem, why, why_size))
        return HTTP_TLS_BAD_CERT;
    if (!is_private_key(key_pem, why, why_size))
        return HTTP_TLS_BAD_KEY;
    gnutls_certificate_credentials_t cred;
    int rc = gnutls_certificate_allocate_credentials(&cred);
    if (rc >= 0) {
        gnutls_datum_t c = pem_datum(cert_pem), k = pem_datum(key_pem);
        rc = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
        gnutls_certificate_free_credentials(cred);
    }
    if (rc >= 0)
        return HTTP_TLS_OK;
    if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
        snprintf(why, why_size, "not the private key of the certificate in tls_cert");
    else
        snprintf(why, why_size, "GnuTLS refuses this key with its certificate (%s)",
                 gnutls_strerror(rc));
    return HTTP_TLS_BAD_KEY;
}

/* ---- start / stop --------------------------------------------------------- */

/* The caller's routes, each with its label registered in the metrics. */
static int copy_routes(struct http_server *srv, const struct http_options *o)
{
    srv->routes = calloc(o->route_count, sizeof(*srv->routes));
    if (srv->routes == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < o->route_count; i++) {
        srv->routes[i].route = o->routes[i];
        srv->routes[i].metric = metrics_route_register(srv->metrics, o->routes[i].pattern);
        srv->routes[i].span_name = span_name_intern(o->routes[i].method, o->routes[i].pattern);
        if (strcmp(o->routes[i].method, "GET") == 0)
            srv->routes[i].span_name_head = span_name_intern("HEAD", o->routes[i].pattern);
    }
    srv->route_count = o->route_count;
    return 0;
}

static struct MHD_Daemon *start_mhd(struct http_server *srv, const struct http_options *o)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (srv->tls_cert)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
        {MHD_OPTION_LISTEN_SOCKET, srv->listen_fd, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, o->threads, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, o->max_connections, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->max_connections_per_ip, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_CONNECTION_MEMORY, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, srv},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)connection_cb, srv},
        {srv->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, srv->tls_cert},
        {srv->tls_cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, srv->tls_key},
        {srv->tls_cert ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0,
         "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    return MHD_start_daemon(flags, 0, NULL, NULL, access_cb, srv, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
}

int http_server_start(const struct http_options *o, struct http_server **out)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    srv->listen_fd = -1;
    srv->watch_head.next = srv->watch_head.prev = &srv->watch_head;
    if (pthread_mutex_init(&srv->watch_lock, NULL) != 0) {
        free(srv);
        return -ENOMEM;
    }
    srv->watch_lock_ready = true;
    srv->request_timeout_s = o->timeout_s > 0 ? o->timeout_s : 30;
    srv->max_body_bytes = o->max_body_bytes;
    srv->metrics = o->metrics;
    srv->authorize = o->authorize;
    srv->authorize_ctx = o->authorize_ctx;
    srv->rate_limit = o->rate_limit;
    srv->rate_limit_ctx = o->rate_limit_ctx;
    srv->tracing = o->tracing;
    int err = copy_routes(srv, o);
    if (err != 0)
        goto fail;
    if (o->tls_cert_pem) {
        srv->tls_cert = strdup(o->tls_cert_pem);
        srv->tls_key = strdup(o->tls_key_pem);
        if (srv->tls_cert == NULL || srv->tls_key == NULL) {
            err = -ENOMEM;
            goto fail;
        }
    }
    err = bind_listen(o->host, o->port, &srv->listen_fd, &srv->port);
    if (err != 0)
        goto fail;
    srv->mhd = start_mhd(srv, o);
    if (srv->mhd == NULL) {
        log_error(NULL, "http: libmicrohttpd did not start on %s:%u", o->host, srv->port);
        err = -EIO;
        goto fail;
    }
    srv->listen_fd = -1; /* MHD closes it in MHD_stop_daemon() */
    *out = srv;
    return 0;
fail:
    http_server_stop(srv);
    return err;
}

uint16_t http_server_port(const struct http_server *srv) { return srv->port; }

void http_server_set_draining(struct http_server *srv) { atomic_store(&srv->draining, true); }

bool http_server_draining(const struct http_server *srv) { return atomic_load(&srv->draining); }

unsigned http_server_in_flight(const struct http_server *srv)
{
    return atomic_load(&srv->in_flight);
}

void http_server_stop(struct http_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->tls_key) {
        explicit_bzero(srv->tls_key, strlen(srv->tls_key));
        free(srv->tls_key);
    }
    free(srv->tls_cert);
    free(srv->routes);
    if (srv->watch_lock_ready)
        pthread_mutex_destroy(&srv->watch_lock);
    free(srv);
}

/* ---- who made the request, for audit lines ------------------------------------- */

const char *http_request_key_name(const struct http_request *req)
{
    bool keyed = req->srv->authorize != NULL && req->route != NULL &&
                 req->route->scope != HTTP_SCOPE_NONE;
    return keyed && req->client[0] != '\0' ? req->client : NULL;
}

void http_request_peer_address(const struct http_request *req, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    char host[NI_MAXHOST];
    socklen_t len = sa && sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                   : sizeof(struct sockaddr_in);
    if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        getnameinfo(sa, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(host, sizeof(host), "unknown");
    snprintf(out, size, "%s", host);
}
