/*
 * test_http.c — routing and the answers the server gives before (and
 * instead of) a handler: which route a method and path reach and with which
 * {id}, 404 and 405 with Allow, HEAD on GET routes, bodies refused where a
 * route takes none, the drain's 503 except on DURING_DRAIN routes, the
 * authorize hook asked with the route's scope, problem+json with its field
 * errors (api_json.h's query problems), and each route counted under its
 * template.
 *
 * Real parts: the server (libmicrohttpd) on 127.0.0.1 at a free port, a
 * real HTTP client (libcurl), a real metrics registry rendered to text. The
 * handlers are the test's own: each answers with the route's name and the
 * {id} it was given, so an assertion names the route that ran.
 */
#include <check.h>
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_json.h"
#include "http.h"
#include "metrics.h"
#include "timeouts.h"

Suite *suite_http(void);

#define BODY_MAX 4096
#define CURL_TIMEOUT_MS 30000 /* a slow sanitizer build on 2 busy cores */

/* ---- the server under test ------------------------------------------------- */

static struct metrics *metrics;
static struct http_server *srv;
/* Written by the authorize hook on a server thread, read by the test. */
static atomic_uint authorize_calls;
static atomic_int authorize_scope;
static atomic_uint authorize_answer; /* 0, 401 or 403 */

/* Replies {"route":NAME,"id":PARAM,"body":LEN}; NAME is the handler's ctx. */
static void echo(struct http_request *req, void *ctx)
{
    const char *id = http_request_param(req);
    size_t len = 0;
    http_request_body(req, &len);
    char *json = NULL;
    if (asprintf(&json, "{\"route\":\"%s\",\"id\":\"%s\",\"body\":%zu}", (const char *)ctx,
                 id != NULL ? id : "", len) < 0)
        json = NULL;
    http_reply_json(req, 200, json);
}

static void reject_unknown(void *arg, const char *name)
{
    static const char *const known[] = {"limit", NULL};
    api_query_reject_unknown(arg, name, known);
}

/* Checks its query string as api_orders.c and api_admin.c do. */
static void query_checker(struct http_request *req, void *ctx)
{
    struct api_query_errors q = {.n = 0};
    (void)ctx;
    http_request_query_names(req, reject_unknown, &q);
    bool present = false;
    const char *limit = http_request_query(req, "limit", &present);
    if (present && strcmp(limit, "10") != 0)
        api_query_error(&q, "limit", "must be %d", 10);
    if (!api_reply_query_errors(req, &q))
        http_reply_json(req, 200, strdup("{}"));
}

static unsigned authorize(void *ctx, const char *authorization, enum http_scope scope,
                          char *client_out, size_t size)
{
    (void)ctx;
    (void)authorization;
    atomic_fetch_add(&authorize_calls, 1);
    atomic_store(&authorize_scope, (int)scope);
    snprintf(client_out, size, "tester");
    return atomic_load(&authorize_answer);
}

static const struct http_route routes[] = {
    {"GET", "/things", echo, "list", HTTP_SCOPE_NONE, 0},
    {"POST", "/things", echo, "create", HTTP_SCOPE_NONE, HTTP_ROUTE_BODY},
    /* a literal before the pattern that also matches it */
    {"POST", "/things/special", echo, "special", HTTP_SCOPE_NONE, 0},
    {"GET", "/things/{id}", echo, "get", HTTP_SCOPE_NONE, 0},
    {"DELETE", "/things/{id}", echo, "delete", HTTP_SCOPE_ADMIN, 0},
    {"GET", "/things/{id}/parts", echo, "parts", HTTP_SCOPE_NONE, 0},
    {"GET", "/probe", echo, "probe", HTTP_SCOPE_NONE, HTTP_ROUTE_DURING_DRAIN},
    {"GET", "/watched", echo, "watched", HTTP_SCOPE_NONE, HTTP_ROUTE_NEEDS_KEY},
    {"GET", "/query", query_checker, NULL, HTTP_SCOPE_NONE, 0},
};

static void server_start(http_authorize_fn auth)
{
    ck_assert_int_eq(metrics_new(&metrics), 0);
    struct http_options o = {
        .host = "127.0.0.1",
        .port = 0,
        .max_body_bytes = BODY_MAX,
        .threads = 2,
        .max_connections = 64,
        .timeout_s = 30,
        .routes = routes,
        .route_count = sizeof(routes) / sizeof(routes[0]),
        .metrics = metrics,
        .authorize = auth,
    };
    ck_assert_int_eq(http_server_start(&o, &srv), 0);
    ck_assert_uint_ne(http_server_port(srv), 0);
    atomic_store(&authorize_calls, 0);
    atomic_store(&authorize_answer, 0);
    ck_assert_int_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
}

static void setup(void) { server_start(NULL); }

static void setup_with_auth(void) { server_start(authorize); }

static void teardown(void)
{
    http_server_stop(srv);
    srv = NULL;
    metrics_free(metrics);
    metrics = NULL;
    curl_global_cleanup();
}

/* ---- the client ---------------------------------------------------------------- */

struct answer {
    long status;
    char body[BODY_MAX];
    size_t len;
    char allow[128];
    char content_type[128];
    bool retry_after;
    bool www_authenticate;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n, room = sizeof(a->body) - 1 - a->len;
    size_t take = len < room ? len : room;
    memcpy(a->body + a->len, data, take);
    a->len += take;
    a->body[a->len] = '\0';
    return len;
}

/* Copies the value of "Name: value\r\n" into out when the header is name. */
static void header_value(const char *line, size_t len, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    if (len <= nlen + 1 || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return;
    const char *v = line + nlen + 1;
    size_t vlen = len - nlen - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
        vlen--;
    snprintf(out, size, "%.*s", (int)vlen, v);
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;
    char seen[8] = "";
    header_value(line, len, "Allow", a->allow, sizeof(a->allow));
    header_value(line, len, "Content-Type", a->content_type, sizeof(a->content_type));
    header_value(line, len, "Retry-After", seen, sizeof(seen));
    a->retry_after |= seen[0] != '\0';
    seen[0] = '\0';
    header_value(line, len, "WWW-Authenticate", seen, sizeof(seen));
    a->www_authenticate |= seen[0] != '\0';
    return len;
}

/* One request; body NULL sends none. */
static struct answer request(const char *method, const char *path, const char *body)
{
    struct answer a;
    memset(&a, 0, sizeof(a));
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)http_server_port(srv), path);
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)CURL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return a;
}

/* The route that answered, as echo() names it. */
static void assert_reached(const struct answer *a, const char *route, const char *id)
{
    char want[128];
    snprintf(want, sizeof(want), "{\"route\":\"%s\",\"id\":\"%s\",", route, id);
    ck_assert_int_eq(a->status, 200);
    ck_assert_msg(strncmp(a->body, want, strlen(want)) == 0, "want %s..., got %s", want, a->body);
}

static void assert_problem(const struct answer *a, long status)
{
    char want[32];
    ck_assert_int_eq(a->status, status);
    ck_assert_str_eq(a->content_type, "application/problem+json");
    snprintf(want, sizeof(want), "\"status\":%ld", status);
    ck_assert_msg(strstr(a->body, want) != NULL, "no %s in %s", want, a->body);
}

/* ---- routing ------------------------------------------------------------------------ */

START_TEST(method_and_path_pick_the_route)
{
    struct answer a = request("GET", "/things", NULL);
    assert_reached(&a, "list", "");
    a = request("POST", "/things", "{}");
    assert_reached(&a, "create", "");
    a = request("GET", "/things/t-42", NULL);
    assert_reached(&a, "get", "t-42");
    a = request("GET", "/things/t-42/parts", NULL);
    assert_reached(&a, "parts", "t-42");
}
END_TEST

/* The first pattern that matches names the resource: the literal wins. */
START_TEST(literal_before_pattern)
{
    struct answer a = request("POST", "/things/special", NULL);
    assert_reached(&a, "special", "");
    /* GET is not a method of the literal's resource, though /things/{id} has it */
    a = request("GET", "/things/special", NULL);
    assert_problem(&a, 405);
    ck_assert_str_eq(a.allow, "POST");
}
END_TEST

START_TEST(unknown_path_is_404)
{
    const char *paths[] = {"/nothing", "/things/", "/things/a/b", "/things//parts", "/thingsx"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct answer a = request("GET", paths[i], NULL);
        assert_problem(&a, 404);
        ck_assert_msg(strstr(a.body, "\"detail\":\"no such resource\"") != NULL, "%s: %s", paths[i],
                      a.body);
    }
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
    struct answer a = request("PUT", "/things", "{}");
    assert_problem(&a, 405);
    ck_assert_str_eq(a.allow, "GET, HEAD, POST");
    a = request("POST", "/things/t-1", NULL);
    assert_problem(&a, 405);
    ck_assert_str_eq(a.allow, "GET, HEAD, DELETE");
}
END_TEST

START_TEST(head_answers_on_a_get_route)
{
    struct answer a = request("HEAD", "/things/t-7", NULL);
    ck_assert_int_eq(a.status, 200);
    ck_assert_uint_eq(a.len, 0);
    ck_assert_str_eq(a.content_type, "application/json");
}
END_TEST

/* A route with HTTP_ROUTE_BODY reads the body, up to max_body_bytes (413
 * beyond); any other route discards what is sent. */
START_TEST(body_only_where_the_route_takes_one)
{
    struct answer a = request("POST", "/things", "{\"a\":1}");
    assert_reached(&a, "create", "");
    ck_assert_ptr_nonnull(strstr(a.body, "\"body\":7}"));
    a = request("GET", "/things/t-1", "{\"a\":1}");
    assert_reached(&a, "get", "t-1");
    ck_assert_ptr_nonnull(strstr(a.body, "\"body\":0}"));

    static char big[BODY_MAX + 2];
    memset(big, ' ', sizeof(big) - 1);
    a = request("POST", "/things", big);
    assert_problem(&a, 413);
}
END_TEST

START_TEST(draining_answers_503_except_during_drain_routes)
{
    http_server_set_draining(srv);
    ck_assert(http_server_draining(srv));
    struct answer a = request("GET", "/things/t-1", NULL);
    assert_problem(&a, 503);
    ck_assert(a.retry_after);
    a = request("GET", "/probe", NULL);
    assert_reached(&a, "probe", "");
    /* a 404 stays a 404 only when no route matched; the drain comes first */
    a = request("GET", "/nothing", NULL);
    assert_problem(&a, 503);
}
END_TEST

/* ---- access ---------------------------------------------------------------------- */

START_TEST(authorize_asked_with_the_route_scope)
{
    struct answer a = request("GET", "/things/t-1", NULL);
    assert_reached(&a, "get", "t-1");
    ck_assert_uint_eq(atomic_load(&authorize_calls), 0); /* open route */

    a = request("DELETE", "/things/t-1", NULL);
    assert_reached(&a, "delete", "t-1");
    ck_assert_uint_eq(atomic_load(&authorize_calls), 1);
    ck_assert_int_eq(atomic_load(&authorize_scope), HTTP_SCOPE_ADMIN);

    a = request("GET", "/watched", NULL); /* NEEDS_KEY: any known key */
    assert_reached(&a, "watched", "");
    ck_assert_uint_eq(atomic_load(&authorize_calls), 2);
    ck_assert_int_eq(atomic_load(&authorize_scope), HTTP_SCOPE_NONE);
}
END_TEST

START_TEST(authorize_refusals)
{
    atomic_store(&authorize_answer, 401);
    struct answer a = request("DELETE", "/things/t-1", NULL);
    assert_problem(&a, 401);
    ck_assert(a.www_authenticate);
    atomic_store(&authorize_answer, 403);
    a = request("DELETE", "/things/t-1", NULL);
    assert_problem(&a, 403);
    ck_assert(!a.www_authenticate);
    a = request("GET", "/watched", NULL);
    assert_problem(&a, 403);
}
END_TEST

/* ---- problems --------------------------------------------------------------------- */

START_TEST(query_problems_listed_in_one_400)
{
    struct answer a = request("GET", "/query?limit=10", NULL);
    ck_assert_int_eq(a.status, 200);
    a = request("GET", "/query?limit=11&color=red", NULL);
    assert_problem(&a, 400);
    ck_assert_ptr_nonnull(strstr(a.body, "\"title\":\"Invalid query\""));
    ck_assert_ptr_nonnull(strstr(a.body, "{\"field\":\"color\",\"message\":\"unknown query "
                                         "parameter\"}"));
    ck_assert_ptr_nonnull(strstr(a.body, "{\"field\":\"limit\",\"message\":\"must be 10\"}"));
}
END_TEST

/* At most API_QUERY_ERRORS_MAX problems; a long name is cut to fit. */
START_TEST(query_problems_bounded)
{
    char path[1024] = "/query?";
    for (int i = 0; i < API_QUERY_ERRORS_MAX + 4; i++) {
        size_t used = strlen(path);
        snprintf(path + used, sizeof(path) - used, "%sp%d=1", i ? "&" : "", i);
    }
    struct answer a = request("GET", path, NULL);
    assert_problem(&a, 400);
    size_t n = 0;
    for (const char *p = a.body; (p = strstr(p, "\"field\":")) != NULL; p++)
        n++;
    ck_assert_uint_eq(n, API_QUERY_ERRORS_MAX);

    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    snprintf(path, sizeof(path), "/query?%s=1", longname);
    a = request("GET", path, NULL);
    assert_problem(&a, 400);
    char want[64];
    snprintf(want, sizeof(want), "{\"field\":\"%.47s\",", longname);
    ck_assert_ptr_nonnull(strstr(a.body, want));
}
END_TEST

/* ---- metrics ---------------------------------------------------------------------- */

static double series_value(const char *text, const char *series)
{
    char needle[256];
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *p = strstr(text, needle);
    return p != NULL ? strtod(p + strlen(needle), NULL) : -1;
}

/* Each answer is counted under its route's template; unmatched under "other". */
START_TEST(requests_counted_under_their_template)
{
    request("GET", "/things/a", NULL);
    request("GET", "/things/b", NULL);
    request("POST", "/things/c", NULL); /* 405: still the resource's template */
    request("GET", "/nothing", NULL);
    /* an answer is counted once the server has written all of it, which may
     * be just after the client read it: poll (up to 30 s) until all four are */
    char *text = NULL;
    for (int i = 0; i < 3000; i++) {
        free(text);
        text = metrics_render(metrics, NULL);
        ck_assert_ptr_nonnull(text);
        if (series_value(text, "orderd_http_requests_total{route=\"other\",code=\"404\"}") +
                series_value(text,
                             "orderd_http_requests_total{route=\"/things/{id}\",code=\"200\"}") +
                series_value(text,
                             "orderd_http_requests_total{route=\"/things/{id}\",code=\"405\"}") ==
            4)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_double_eq(
        series_value(text, "orderd_http_requests_total{route=\"/things/{id}\",code=\"200\"}"), 2);
    ck_assert_double_eq(
        series_value(text, "orderd_http_requests_total{route=\"/things/{id}\",code=\"405\"}"), 1);
    ck_assert_double_eq(
        series_value(text, "orderd_http_requests_total{route=\"other\",code=\"404\"}"), 1);
    /* GET and POST /things share one label */
    ck_assert_str_eq(metrics_route_label(metrics, metrics_route_register(metrics, "/things")),
                     "/things");
    free(text);
}
END_TEST

Suite *suite_http(void)
{
    Suite *s = suite_create("http");

    TCase *tc = tcase_create("routing");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, method_and_path_pick_the_route);
    tcase_add_test(tc, literal_before_pattern);
    tcase_add_test(tc, unknown_path_is_404);
    tcase_add_test(tc, wrong_method_is_405_with_allow);
    tcase_add_test(tc, head_answers_on_a_get_route);
    tcase_add_test(tc, body_only_where_the_route_takes_one);
    tcase_add_test(tc, draining_answers_503_except_during_drain_routes);
    tcase_add_test(tc, query_problems_listed_in_one_400);
    tcase_add_test(tc, query_problems_bounded);
    tcase_add_test(tc, requests_counted_under_their_template);
    suite_add_tcase(s, tc);

    tc = tcase_create("access");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_checked_fixture(tc, setup_with_auth, teardown);
    tcase_add_test(tc, authorize_asked_with_the_route_scope);
    tcase_add_test(tc, authorize_refusals);
    suite_add_tcase(s, tc);
    return s;
}
