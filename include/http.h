/*
 * http.h — the embedded HTTP server (libmicrohttpd): routing, body limits,
 * request ids, trace context, problem+json, suspend/resume.
 *
 * The server runs MHD's internal epoll thread pool. A handler runs on one of
 * those threads; it either sets a reply before it returns, or suspends the
 * request (http_request_suspend), hands it to another thread, and that thread
 * sets the reply and calls http_request_resume(). Every reply carries
 * X-Request-Id and traceparent. Each request is one SERVER span
 * (tracing.h), a child of the incoming traceparent when there is one, named
 * "METHOD /route/{template}" and ended when the reply has been sent; the
 * reply's traceparent is that span's context. The TLS certificate and key are read and
 * checked here too, before the server starts (http_tls_read_pem,
 * http_tls_check), so that a start can refuse them before it touches anything.
 */
#ifndef ORDERD_HTTP_H
#define ORDERD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "trace.h"
#include "tracing.h"

struct http_request;
struct http_server;

typedef void (*http_handler_fn)(struct http_request *req, void *ctx);

/* What a route needs from the caller's API key (see auth). */
enum http_scope {
    HTTP_SCOPE_NONE,              /* open (health, readiness), or any known key: needs_key */
    HTTP_SCOPE_ORDERS_WRITE,
    HTTP_SCOPE_ORDERS_READ,
    HTTP_SCOPE_ADMIN,
};

/* What a route asks of the server besides its scope (an OR of them). */
enum http_route_flag {
    HTTP_ROUTE_BODY = 1u << 0,         /* takes a body (up to max_body_bytes); else it is discarded */
    HTTP_ROUTE_NEEDS_KEY = 1u << 1,    /* scope NONE but, when auth is on, any known key */
    HTTP_ROUTE_DURING_DRAIN = 1u << 2, /* keeps answering while draining (probes, metrics) */
};

/*
 * One route, all of it: adding a route is one line in the caller's table.
 * The server registers the pattern as the route's label in the HTTP
 * metrics (metrics_route_register), so the label is the template itself.
 * The first pattern that matches a path names the resource: list a literal
 * ("/admin/dlq/redrive") before a pattern that also matches it.
 */
struct http_route {
    const char *method;           /* "GET" also answers HEAD */
    const char *pattern;          /* "/orders/{id}": {id} matches one non-empty segment */
    http_handler_fn handler;
    void *ctx;
    enum http_scope scope;
    unsigned flags; /* enum http_route_flag */
};

/* One entry of a problem's "errors" member: which input, what is wrong. */
struct http_field_error {
    char field[48]; /* "customer_id", "items[3].item", "limit"; "" for the body */
    char message[128];
};

/*
 * Access control hook, called before the handler of a route whose scope is not
 * NONE, or that needs_key (then with HTTP_SCOPE_NONE: any known key will do).
 * Returns 0 to allow, 401 or 403 to refuse (the server writes the problem).
 * client_out (HTTP_CLIENT_MAX + 1 bytes) receives the key's name for rate
 * limiting.
 */
typedef unsigned (*http_authorize_fn)(void *ctx, const char *authorization,
                                      enum http_scope scope, char *client_out, size_t size);
/* Rate limit hook: 0 to allow, else the seconds for Retry-After. */
typedef unsigned (*http_rate_limit_fn)(void *ctx, const char *client);

struct http_options {
    const char *host;             /* numeric address or "localhost" */
    uint16_t port;                /* 0: any free port; see http_server_port() */
    uint64_t max_body_bytes;
    unsigned threads;             /* MHD pool size, >= 1 */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* 0 = unlimited */
    unsigned timeout_s;           /* a complete request within this; also MHD's idle timeout */
    const char *tls_cert_pem;     /* NULL = plain HTTP; else PEM text, copied */
    const char *tls_key_pem;
    const struct http_route *routes; /* copied */
    size_t route_count;
    struct metrics *metrics;
    http_authorize_fn authorize;  /* NULL = no auth */
    void *authorize_ctx;
    http_rate_limit_fn rate_limit; /* NULL = no limit */
    void *rate_limit_ctx;
    struct tracing *tracing;      /* the SERVER spans go there; NULL: ids only, nothing recorded */
};

/*
 * Reads a PEM file (tls_cert or tls_key) of at most HTTP_TLS_PEM_MAX bytes for
 * http_options. 0 with *out (NUL-terminated; the caller wipes a key and frees
 * it), or -errno (-ENOENT: no such file), -EFBIG, -ENODATA (empty) or -ENOMEM,
 * with why set to a line saying so. Any thread; logs nothing.
 */
int http_tls_read_pem(const char *path, char **out, char *why, size_t why_size);

enum http_tls_fault {
    HTTP_TLS_OK,
    HTTP_TLS_BAD_CERT,            /* no PEM certificate in it */
    HTTP_TLS_BAD_KEY,             /* no PEM private key (unencrypted), or not the certificate's */
};
/* Whether the server will take this pair, asked of GnuTLS as libmicrohttpd does. Any thread. */
enum http_tls_fault http_tls_check(const char *cert_pem, const char *key_pem, char *why,
                                   size_t why_size);

/* Binds and starts serving. 0, or -errno with a log line saying why. */
int http_server_start(const struct http_options *opts, struct http_server **out);
uint16_t http_server_port(const struct http_server *srv);
/* From now on new requests get 503 + Connection: close (health and metrics still answer). */
void http_server_set_draining(struct http_server *srv);
bool http_server_draining(const struct http_server *srv);
/* Requests accepted but not finished. */
unsigned http_server_in_flight(const struct http_server *srv);
/*
 * Closes connections that have not delivered a complete request within
 * timeout_s (slow or idle clients). Call about once a second; loop thread.
 */
void http_server_enforce_deadlines(struct http_server *srv);
/* Connections closed by http_server_enforce_deadlines() so far. */
unsigned long http_server_deadline_closes(const struct http_server *srv);
/* Stops the threads and closes every connection; frees srv. Safe with NULL. */
void http_server_stop(struct http_server *srv);

/* ---- for handlers ------------------------------------------------------ */

const char *http_request_method(const struct http_request *req);
const char *http_request_path(const struct http_request *req);
/* The {id} segment of the matched pattern, or NULL. */
const char *http_request_param(const struct http_request *req);
/* Header value or NULL (case-insensitive name). */
const char *http_request_header(const struct http_request *req, const char *name);
/* Query argument or NULL; *present tells an empty value from absence. */
const char *http_request_query(const struct http_request *req, const char *name, bool *present);
/* Calls fn for every query argument name (to reject unknown ones). */
void http_request_query_names(const struct http_request *req,
                              void (*fn)(void *arg, const char *name), void *arg);
const char *http_request_body(const struct http_request *req, size_t *len);
const char *http_request_id(const struct http_request *req);
/* This request's span: the incoming trace's child, or a new trace. */
const struct trace_context *http_request_trace(const struct http_request *req);
/*
 * The request's SERVER span, for a handler's own attributes
 * (tracing_span_attr_*: "orderd.order_id"); the server sets the HTTP ones and
 * ends it. On a suspended request, only the thread that holds it until
 * http_request_resume() may touch it.
 */
struct tracing_span *http_request_span(struct http_request *req);
/* The tracer the server's spans go to (http_options.tracing), for a
 * handler's own spans; may be NULL. */
struct tracing *http_request_tracing(const struct http_request *req);

/* Takes ownership of json (a NUL-terminated heap string). */
void http_reply_json(struct http_request *req, unsigned status, char *json);
/* Takes ownership of body (heap, len bytes). */
void http_reply_owned(struct http_request *req, unsigned status, const char *content_type,
                      char *body, size_t len);
/* A static body (not freed) with its content type. */
void http_reply_static(struct http_request *req, unsigned status, const char *content_type,
                       const char *body, size_t len);
/* RFC 9457 problem+json; errors may be NULL. type is derived from status. */
void http_reply_problem(struct http_request *req, unsigned status, const char *title,
                        const char *detail, const struct http_field_error *errors, size_t n_errors);
/* Adds a header to the reply (copied); up to 8 per reply. */
void http_reply_header(struct http_request *req, const char *name, const char *value);

/* Call before handing req to another thread; the handler then returns. */
void http_request_suspend(struct http_request *req);
/* From any thread, after a reply was set on a suspended request. */
void http_request_resume(struct http_request *req);

/* For an audit line (api_admin.c): the name of the API key that was let in,
 * or NULL when no key was asked for (no keys_file, or an open route). */
const char *http_request_key_name(const struct http_request *req);
/* The client's numeric address ("192.0.2.7", "2001:db8::1"), or "unknown". */
void http_request_peer_address(const struct http_request *req, char *out, size_t size);

#endif
