/*
 * fulfilment_http.h — one order POSTed to the operator's fulfilment service
 * (`[workers] fulfilment_url`), as a libcurl easy handle that the caller runs
 * in its own multi handle, so one thread keeps many requests in flight over
 * a pool of keep-alive connections (the multi's connection cache).
 *
 * The request: POST url, the order JSON as the body, headers Content-Type,
 * Idempotency-Key (the order id: stable across redeliveries), traceparent (the
 * caller's CLIENT span of the order's trace), User-Agent orderd/VERSION, and, with
 * secrets, the Standard Webhooks headers webhook-id, webhook-timestamp,
 * webhook-signature (webhook.h). No redirects are followed; TLS is verified
 * (against ca_file when set); the answer's headers and body are bounded.
 *
 * The answer decides the order's fate (fulfilment_http_classify):
 *   2xx                            FULFILMENT_OK; a JSON body of at most
 *                                  FULFILMENT_RESULT_MAX bytes is kept
 *   408 425 429 5xx, no answer     FULFILMENT_FAILED: retry, after Retry-After
 *                                  when it says so
 *   timeout                        FULFILMENT_TIMEOUT: retry
 *   any other status               FULFILMENT_REJECTED: dead letter at once
 *
 * Threads: a call belongs to the thread whose multi runs it. The options and
 * the secrets are read-only while calls use them.
 */
#ifndef ORDERD_FULFILMENT_HTTP_H
#define ORDERD_FULFILMENT_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "webhook.h"

struct fulfilment_http_options {
    const char *url;                       /* http:// or https:// */
    const char *ca_file;                   /* NULL: the system's CAs */
    const struct webhook_secrets *secrets; /* NULL: requests are not signed */
    int64_t timeout_ms;                    /* the whole request, connect included */
};

/* What one request came to. */
struct fulfilment_answer {
    int result;                       /* enum fulfilment_result */
    long status;                      /* the HTTP status answered; 0: no answer */
    int64_t retry_after_ms;           /* -1: the answer named no time */
    char *result_json;                /* FULFILMENT_OK with a small JSON body; caller frees */
    char error[FULFILMENT_ERROR_MAX]; /* not OK: status line and a bounded body excerpt */
};

struct fulfilment_http_call;

/*
 * Prepares the request for one order (body: the order JSON, copied). 0, or
 * -ENOMEM / -EINVAL with the reason in error.
 */
int fulfilment_http_call_new(const struct fulfilment_http_options *o, const char *order_id,
                             const char *traceparent, const char *body, size_t body_len,
                             struct fulfilment_http_call **out, char *error, size_t error_size);

/* The easy handle to add to a multi; its CURLINFO_PRIVATE is the call. */
CURL *fulfilment_http_call_handle(struct fulfilment_http_call *c);

/*
 * After the multi reported the transfer done with code (and the caller
 * removed the handle from the multi): fills out and frees the call.
 */
void fulfilment_http_call_finish(struct fulfilment_http_call *c, CURLcode code,
                                 struct fulfilment_answer *out);

/* Frees a call that never finished (shutdown); remove it from the multi first. */
void fulfilment_http_call_abandon(struct fulfilment_http_call *c);

/*
 * What a trace may show of the URL (the CLIENT span's url.full,
 * server.address, server.port): url without user, password and query
 * string, cut to TRACING_ATTR_VALUE_MAX bytes. 0 or -EINVAL (not a URL
 * libcurl parses) / -ENOMEM. Any thread.
 */
struct fulfilment_http_target {
    char url[TRACING_ATTR_VALUE_MAX + 1];
    char host[TRACING_ATTR_VALUE_MAX + 1];
    long port;
};
int fulfilment_http_target_of(const char *url, struct fulfilment_http_target *out);

/* The fate an HTTP status decides (enum fulfilment_result). */
int fulfilment_http_classify(long status);

/*
 * A Retry-After value (delta-seconds or an HTTP-date) in ms from now_s
 * (Unix seconds); -1 when it cannot be read. Never negative otherwise.
 */
int64_t fulfilment_http_retry_after_ms(const char *value, int64_t now_s);

#endif
