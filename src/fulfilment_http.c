/*
 * fulfilment_http.c — one order POSTed to the fulfilment service (see
 * fulfilment_http.h): the easy handle and its headers, the bounded capture
 * of the answer, and the verdict drawn from it.
 *
 * A call owns its body copy, its header list and what it captured of the
 * answer; the connection belongs to the multi that runs it, which keeps it
 * alive for the next call. Runs on worker threads; shares nothing.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fulfilment.h"
#include "fulfilment_http.h"

struct fulfilment_http_call {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    int64_t timeout_ms;
    char curl_error[CURL_ERROR_SIZE];
    /* the answer, as captured */
    char status_line[128]; /* of the last response (after any 1xx) */
    char retry_after[64];
    size_t header_bytes;
    bool headers_too_big;
    char *answer; /* the first FULFILMENT_RESULT_MAX bytes of the body */
    size_t answer_len, answer_seen;
    bool body_too_big;
};

/* ---- the answer ------------------------------------------------------------- */

int fulfilment_http_classify(long status)
{
    if (status >= 200 && status <= 299)
        return FULFILMENT_OK;
    if (status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599))
        return FULFILMENT_FAILED;
    if (status < 200)
        return FULFILMENT_FAILED; /* no final answer: as a connection error */
    return FULFILMENT_REJECTED;
}

int64_t fulfilment_http_retry_after_ms(const char *value, int64_t now_s)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value == '\0')
        return -1;
    if (isdigit((unsigned char)*value)) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(value, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end != '\0' || (errno != 0 && errno != ERANGE))
            return -1;
        /* too large to count: as long as can be (the caller caps it) */
        return errno == ERANGE || s > INT64_MAX / 1000 ? INT64_MAX : (int64_t)s * 1000;
    }
    time_t at = curl_getdate(value, NULL);
    if (at == (time_t)-1)
        return -1;
    return at <= now_s ? 0 : ((int64_t)at - now_s) * 1000;
}

static void copy_trimmed(char *out, size_t size, const char *p, size_t len)
{
    while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
        len--;
    if (len >= size)
        len = size - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct fulfilment_http_call *c = arg;
    size_t len = size * n;
    c->header_bytes += len;
    if (c->header_bytes > FULFILMENT_HEADERS_MAX) {
        c->headers_too_big = true;
        return 0; /* aborts the transfer */
    }
    if (len > 5 && strncmp(p, "HTTP/", 5) == 0) {
        copy_trimmed(c->status_line, sizeof(c->status_line), p, len);
        c->retry_after[0] = '\0'; /* a new response (after a 1xx) starts over */
    } else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        copy_trimmed(c->retry_after, sizeof(c->retry_after), p + 12, len - 12);
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct fulfilment_http_call *c = arg;
    size_t len = size * n;
    c->answer_seen += len;
    if (c->answer_seen > FULFILMENT_RESPONSE_MAX) {
        c->body_too_big = true;
        return 0; /* aborts the transfer */
    }
    size_t room = FULFILMENT_RESULT_MAX - c->answer_len;
    size_t keep = len < room ? len : room;
    memcpy(c->answer + c->answer_len, p, keep);
    c->answer_len += keep;
    return len;
}

/* ---- the request -------------------------------------------------------------- */

static int add_header(struct fulfilment_http_call *c, const char *fmt, const char *value)
{
    char line[WEBHOOK_SIGNATURE_MAX + 64];
    int n = snprintf(line, sizeof(line), fmt, value);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL;
    struct curl_slist *l = curl_slist_append(c->headers, line);
    if (l == NULL)
        return -ENOMEM;
    c->headers = l;
    return 0;
}

static int add_signature(struct fulfilment_http_call *c, const struct webhook_secrets *secrets,
                         const char *order_id, size_t body_len)
{
    int64_t ts = (int64_t)time(NULL);
    char ts_text[24], sig[WEBHOOK_SIGNATURE_MAX];
    snprintf(ts_text, sizeof(ts_text), "%lld", (long long)ts);
    int err = webhook_sign(secrets, order_id, ts, c->body, body_len, sig, sizeof(sig));
    if (err == 0)
        err = add_header(c, "webhook-id: %s", order_id);
    if (err == 0)
        err = add_header(c, "webhook-timestamp: %s", ts_text);
    if (err == 0)
        err = add_header(c, "webhook-signature: %s", sig);
    return err;
}

static int build_headers(struct fulfilment_http_call *c, const struct fulfilment_http_options *o,
                         const char *order_id, const char *traceparent, size_t body_len)
{
    int err = add_header(c, "Content-Type: %s", "application/json");
    if (err == 0)
        err = add_header(c, "Idempotency-Key: %s", order_id);
    if (err == 0)
        err = add_header(c, "traceparent: %s", traceparent);
    if (err == 0)
        err = add_header(c, "User-Agent: orderd/%s", ORDERD_VERSION);
    if (err == 0)
        err = add_header(c, "Expect:%s", ""); /* no 100-continue round trip */
    if (err == 0 && o->secrets != NULL)
        err = add_signature(c, o->secrets, order_id, body_len);
    return err;
}

static int set_options(struct fulfilment_http_call *c, const struct fulfilment_http_options *o,
                       size_t body_len)
{
    CURL *e = c->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, o->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, c->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    SET(CURLOPT_HTTPHEADER, c->headers);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, c);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_ERRORBUFFER, c->curl_error);
    SET(CURLOPT_PRIVATE, c);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file != NULL)
        SET(CURLOPT_CAINFO, o->ca_file);
#undef SET
    return rc == CURLE_OK ? 0 : -EINVAL;
}

int fulfilment_http_call_new(const struct fulfilment_http_options *o, const char *order_id,
                             const char *traceparent, const char *body, size_t body_len,
                             struct fulfilment_http_call **out, char *error, size_t error_size)
{
    struct fulfilment_http_call *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->body = malloc(body_len + 1)) == NULL ||
        (c->answer = malloc(FULFILMENT_RESULT_MAX + 1)) == NULL ||
        (c->easy = curl_easy_init()) == NULL) {
        snprintf(error, error_size, "out of memory");
        fulfilment_http_call_abandon(c);
        return -ENOMEM;
    }
    memcpy(c->body, body, body_len);
    c->body[body_len] = '\0';
    c->timeout_ms = o->timeout_ms;
    int err = build_headers(c, o, order_id, traceparent, body_len);
    if (err == 0)
        err = set_options(c, o, body_len);
    if (err != 0) {
        snprintf(error, error_size, "cannot prepare the fulfilment request");
        fulfilment_http_call_abandon(c);
        return err;
    }
    *out = c;
    return 0;
}

CURL *fulfilment_http_call_handle(struct fulfilment_http_call *c) { return c->easy; }

/* ---- what a trace shows of the URL ---------------------------------------------- */

static void copy_part(CURLU *u, CURLUPart what, char *out, size_t size)
{
    char *part = NULL;
    out[0] = '\0';
    if (curl_url_get(u, what, &part, 0) == CURLUE_OK && part != NULL)
        snprintf(out, size, "%s", part);
    curl_free(part);
}

int fulfilment_http_target_of(const char *url, struct fulfilment_http_target *out)
{
    memset(out, 0, sizeof(*out));
    CURLU *u = curl_url();
    if (u == NULL)
        return -ENOMEM;
    int err = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK ? 0 : -EINVAL;
    /* credentials and the query (a token may hide there) never go into a span */
    if (err == 0 && (curl_url_set(u, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
                     curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
                     curl_url_set(u, CURLUPART_QUERY, NULL, 0) != CURLUE_OK ||
                     curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK))
        err = -ENOMEM;
    if (err == 0) {
        copy_part(u, CURLUPART_URL, out->url, sizeof(out->url));
        copy_part(u, CURLUPART_HOST, out->host, sizeof(out->host));
        char *port = NULL;
        if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK && port)
            out->port = strtol(port, NULL, 10);
        curl_free(port);
    }
    curl_url_cleanup(u);
    return err;
}

void fulfilment_http_call_abandon(struct fulfilment_http_call *c)
{
    if (c == NULL)
        return;
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->body);
    free(c->answer);
    free(c);
}

/* ---- the verdict ------------------------------------------------------------- */

/* The answer's body as last_error shows it: printable, bounded. */
static void excerpt(const struct fulfilment_http_call *c, char *out, size_t size)
{
    size_t n = c->answer_len < FULFILMENT_EXCERPT_MAX ? c->answer_len : FULFILMENT_EXCERPT_MAX;
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++) {
        unsigned char ch = (unsigned char)c->answer[i];
        out[k++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    out[k] = '\0';
}

static void describe_status(const struct fulfilment_http_call *c, long status,
                            struct fulfilment_answer *a)
{
    char body[FULFILMENT_EXCERPT_MAX + 1];
    excerpt(c, body, sizeof(body));
    const char *line = c->status_line[0] ? c->status_line : "HTTP";
    if (c->status_line[0] == '\0')
        snprintf(a->error, sizeof(a->error), "fulfilment answered %ld%s%s", status,
                 body[0] ? ": " : "", body);
    else
        snprintf(a->error, sizeof(a->error), "fulfilment answered %s%s%s", line,
                 body[0] ? ": " : "", body);
}

/* A 2xx body worth keeping: JSON, whole, within FULFILMENT_RESULT_MAX. */
static char *result_of(const struct fulfilment_http_call *c)
{
    if (c->answer_len == 0 || c->answer_seen > FULFILMENT_RESULT_MAX || c->body_too_big)
        return NULL;
    json_t *j = json_loadb(c->answer, c->answer_len, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL)
        return NULL;
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(j);
    if (text != NULL && strlen(text) > FULFILMENT_RESULT_MAX) {
        free(text);
        return NULL;
    }
    return text;
}

static void transfer_failed(const struct fulfilment_http_call *c, CURLcode code,
                            struct fulfilment_answer *a)
{
    if (code == CURLE_OPERATION_TIMEDOUT) {
        a->result = FULFILMENT_TIMEOUT;
        snprintf(a->error, sizeof(a->error), "fulfilment timed out after %lld ms",
                 (long long)c->timeout_ms);
        return;
    }
    a->result = FULFILMENT_FAILED;
    if (c->headers_too_big)
        snprintf(a->error, sizeof(a->error),
                 "fulfilment request failed: answer headers over %d bytes", FULFILMENT_HEADERS_MAX);
    else
        snprintf(a->error, sizeof(a->error), "fulfilment request failed: %s%s%s",
                 curl_easy_strerror(code), c->curl_error[0] ? ": " : "", c->curl_error);
}

void fulfilment_http_call_finish(struct fulfilment_http_call *c, CURLcode code,
                                 struct fulfilment_answer *a)
{
    memset(a, 0, sizeof(*a));
    a->retry_after_ms = -1;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    /* A body over the bound aborts the read, but the status was answered. */
    bool answered = code == CURLE_OK || (code == CURLE_WRITE_ERROR && c->body_too_big);
    if (!answered || status == 0) {
        transfer_failed(c, code, a);
    } else {
        a->status = status;
        a->result = fulfilment_http_classify(status);
        if (a->result == FULFILMENT_OK)
            a->result_json = result_of(c);
        else
            describe_status(c, status, a);
        if (a->result == FULFILMENT_FAILED && c->retry_after[0])
            a->retry_after_ms = fulfilment_http_retry_after_ms(c->retry_after, time(NULL));
    }
    fulfilment_http_call_abandon(c);
}
