/*
 * ctl.c — `orderd ctl` (see ctl.h): the operator's commands against the
 * running daemon's HTTP API, with libcurl, answers read with jansson. It owns
 * the command line, the URL, the key file, the requests (and the pages of a
 * list), the exit statuses and ctl_main; the text it shows people, and the
 * --json output, come from ctl_format.c (both through ctl_int.h).
 *
 *   orders get ID          GET /orders/{id}
 *   orders list            GET /orders?status=&customer_id=&limit=&cursor=
 *   dlq list               GET /admin/dlq?limit=&cursor=
 *   dlq redrive ID         POST /admin/dlq/{id}/redrive
 *   dlq redrive --all      POST /admin/dlq/redrive
 *   dlq delete ID          DELETE /admin/dlq/{id}
 *   stats                  GET /status.json
 *
 * The URL is --url, or derived from the config's [server] listen (https
 * when tls_cert is set, loopback for a wildcard address). TLS is always
 * verified (--ca-file adds a CA; there is no way to turn verification off).
 * The key is the first line of --key-file, never of argv (ps would show it),
 * and is never printed. Requests are bounded in time (--timeout) and their
 * answers in size (CTL_RESPONSE_MAX); redirects are not followed.
 *
 * Output (ctl_format.c): tables and "key: value" lines for people, every
 * string cleaned of control characters (a customer's text never drives the
 * terminal); --json gives the API's JSON as it answered (for --all, one item
 * a line). Every failure is one line on stderr naming the request, what came
 * back and the daemon's request id, and its own exit status (ctl_int.h,
 * orderd(8) CTL).
 *
 * Threads: the main thread, with no other thread running.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "ctl.h"
#include "ctl_int.h"
#include "strbuf.h"

#define ERR_MAX 512
#define LIST_LIMIT_ALL 500 /* page size of --all without --limit: the API's largest */

/* ---- the command line ---------------------------------------------------------- */

enum {
    OPT_URL = 256,
    OPT_KEY_FILE,
    OPT_CA_FILE,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_STATUS,
    OPT_CUSTOMER,
    OPT_LIMIT,
    OPT_CURSOR,
    OPT_ALL,
};

static const struct option longopts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"ca-file", required_argument, NULL, OPT_CA_FILE},
    {"json", no_argument, NULL, OPT_JSON},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"status", required_argument, NULL, OPT_STATUS},
    {"customer", required_argument, NULL, OPT_CUSTOMER},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"cursor", required_argument, NULL, OPT_CURSOR},
    {"all", no_argument, NULL, OPT_ALL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

void ctl_usage(FILE *out)
{
    fprintf(out,
            "usage: orderd [-c FILE] ctl [OPTIONS] COMMAND\n"
            "Asks the running daemon, over its HTTP API.\n"
            "\n"
            "Commands:\n"
            "  orders get ID                one order, as \"key: value\" lines\n"
            "  orders list [--status S] [--customer ID] [--limit N] [--cursor C] [--all]\n"
            "                               a page of orders, newest first (--all: every page)\n"
            "  dlq list [--limit N] [--cursor C] [--all]\n"
            "                               the dead-letter queue, newest first\n"
            "  dlq redrive ID | --all       put one dead letter, or all, back on the queue\n"
            "  dlq delete ID                drop a dead letter for good (its order: discarded)\n"
            "  stats                        the daemon's counters (/status.json)\n"
            "\n"
            "Options (anywhere on the line):\n"
            "  --url URL        the daemon; default from [server] listen of the config:\n"
            "                   http://HOST:PORT (https:// when tls_cert is set; 0.0.0.0\n"
            "                   and :: mean this host's loopback)\n"
            "  --key-file FILE  an API key, the first line of FILE (not readable by other\n"
            "                   users); sent as \"Authorization: Bearer\", never shown.\n"
            "                   orders needs orders:read, dlq needs admin\n"
            "  --ca-file FILE   trust the CA certificates in FILE for https, e.g. the\n"
            "                   daemon's self-signed tls_cert (verification cannot be off)\n"
            "  --timeout D      each request at most, connecting included (default 10s)\n"
            "  --json           the API's JSON as it answers; with --all one item a line\n"
            "  -h, --help       this text\n"
            "\n"
            "Exit status:\n"
            "  0  done\n"
            "  1  usage error, or a --key-file or --ca-file that cannot be used\n"
            "  2  no answer from the daemon: refused, DNS, TLS, timeout, connection lost\n"
            "  3  not found (404): no such order or dead letter\n"
            "  4  refused (401, 403): no key, an unknown key, or a key without the scope\n"
            "  5  another error answer (400, 409, 429, 5xx, 503 while draining), or an\n"
            "     answer that is not what the API promises\n"
            "Each failure is one line on stderr. See orderd(8), CTL.\n");
}

static int usage_error(char *err, size_t size, const char *fmt, const char *arg)
{
    snprintf(err, size, fmt, arg);
    return -EINVAL;
}

/* --timeout: a duration with a unit (500ms, 30s, 1m), or whole seconds. */
static int parse_timeout(const char *s, uint64_t *out)
{
    uint64_t ms = 0;
    bool digits = *s != '\0' && strspn(s, "0123456789") == strlen(s);
    if (digits && strlen(s) <= 7)
        ms = strtoull(s, NULL, 10) * 1000;
    else if (digits || config_parse_duration_ms(s, &ms) != 0)
        return -EINVAL;
    if (ms == 0 || ms > CTL_TIMEOUT_MS_MAX)
        return -EINVAL;
    *out = ms;
    return 0;
}

static int parse_limit(const char *s, unsigned *out)
{
    if (*s == '\0' || strspn(s, "0123456789") != strlen(s) || strlen(s) > 9)
        return -EINVAL;
    unsigned long n = strtoul(s, NULL, 10);
    if (n == 0)
        return -EINVAL;
    *out = (unsigned)n;
    return 0;
}

/* The command from its words (argv without options). */
static int parse_words(char **w, size_t n, struct ctl_options *o, char *err, size_t size)
{
    if (n == 0)
        return usage_error(err, size, "no command%s (orders, dlq or stats)", "");
    const char *noun = w[0], *verb = n > 1 ? w[1] : NULL;
    size_t want = 2; /* words the command takes */
    if (strcmp(noun, "help") == 0) {
        o->help = true;
        return 0;
    } else if (strcmp(noun, "stats") == 0) {
        o->cmd = CTL_CMD_STATS;
        want = 1;
    } else if (strcmp(noun, "orders") == 0) {
        if (verb == NULL)
            return usage_error(err, size, "orders what? (orders get ID, orders list)%s", "");
        if (strcmp(verb, "get") == 0) {
            o->cmd = CTL_CMD_ORDERS_GET;
            want = 3;
        } else if (strcmp(verb, "list") == 0) {
            o->cmd = CTL_CMD_ORDERS_LIST;
        } else {
            return usage_error(err, size, "unknown command: orders %s (get, list)", verb);
        }
    } else if (strcmp(noun, "dlq") == 0) {
        if (verb == NULL)
            return usage_error(err, size,
                               "dlq what? (dlq list, dlq redrive ID|--all, dlq delete ID)%s", "");
        if (strcmp(verb, "list") == 0) {
            o->cmd = CTL_CMD_DLQ_LIST;
        } else if (strcmp(verb, "redrive") == 0) {
            if (o->all && n > 2)
                return usage_error(err, size, "dlq redrive takes an ID or --all, not both%s", "");
            if (!o->all && n < 3)
                return usage_error(err, size, "dlq redrive needs an ID, or --all%s", "");
            o->cmd = o->all ? CTL_CMD_DLQ_REDRIVE_ALL : CTL_CMD_DLQ_REDRIVE;
            want = o->all ? 2 : 3;
        } else if (strcmp(verb, "delete") == 0) {
            o->cmd = CTL_CMD_DLQ_DELETE;
            want = 3;
        } else {
            return usage_error(err, size, "unknown command: dlq %s (list, redrive, delete)", verb);
        }
    } else {
        return usage_error(err, size, "unknown command: %s (orders, dlq or stats)", noun);
    }
    if (n < want)
        return usage_error(err, size, "%s needs an ID",
                           o->cmd == CTL_CMD_ORDERS_GET ? "orders get" : "dlq delete");
    if (n > want)
        return usage_error(err, size, "unexpected argument: %s", w[want]);
    if (want == 3) {
        o->id = w[2];
        if (o->id[0] == '\0')
            return usage_error(err, size, "an empty ID%s", "");
    }
    return 0;
}

/* The options that belong to some commands only. */
static int check_options(const struct ctl_options *o, const bool seen[], char *err, size_t size)
{
    bool list = o->cmd == CTL_CMD_ORDERS_LIST || o->cmd == CTL_CMD_DLQ_LIST;
    if ((seen[0] || seen[1]) && o->cmd != CTL_CMD_ORDERS_LIST)
        return usage_error(err, size, "%s is for orders list", seen[0] ? "--status" : "--customer");
    if ((seen[2] || seen[3]) && !list)
        return usage_error(err, size, "%s is for orders list and dlq list",
                           seen[2] ? "--limit" : "--cursor");
    if (o->all && !list && o->cmd != CTL_CMD_DLQ_REDRIVE_ALL)
        return usage_error(err, size, "--all is for orders list, dlq list and dlq redrive%s", "");
    return 0;
}

int ctl_parse_args(int argc, char **argv, struct ctl_options *o, char *err, size_t err_size)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = CTL_TIMEOUT_MS_DEFAULT;
    err[0] = '\0';
    /* getopt_long permutes what it is given: a copy, so argv stays as it was */
    char **args = calloc((size_t)argc + 1, sizeof(*args));
    if (args == NULL)
        return usage_error(err, err_size, "out of memory%s", "");
    memcpy(args, argv, (size_t)argc * sizeof(*args));
    bool seen[4] = {false}; /* --status --customer --limit --cursor */
    int rc = 0, opt;
    optind = 0; /* GNU: start again from scratch (main.c parsed its own options) */
    opterr = 0;
    while (rc == 0 && (opt = getopt_long(argc, args, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            o->help = true;
            break;
        case OPT_URL:
            o->url = optarg;
            break;
        case OPT_KEY_FILE:
            o->key_file = optarg;
            break;
        case OPT_CA_FILE:
            o->ca_file = optarg;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_ALL:
            o->all = true;
            break;
        case OPT_STATUS:
            o->status = optarg;
            seen[0] = true;
            break;
        case OPT_CUSTOMER:
            o->customer = optarg;
            seen[1] = true;
            break;
        case OPT_CURSOR:
            o->cursor = optarg;
            seen[3] = true;
            break;
        case OPT_LIMIT:
            seen[2] = true;
            if (parse_limit(optarg, &o->limit) != 0)
                rc = usage_error(err, err_size, "--limit %s: not a whole number from 1", optarg);
            break;
        case OPT_TIMEOUT:
            if (parse_timeout(optarg, &o->timeout_ms) != 0)
                rc = usage_error(err, err_size,
                                 "--timeout %s: not a duration from 1ms to 1h (500ms, 30s, 1m)",
                                 optarg);
            break;
        case ':':
            rc = usage_error(err, err_size, "%s needs a value", args[optind - 1]);
            break;
        default:
            if (optopt != 0) {
                char o1[3] = {'-', (char)optopt, '\0'};
                rc = usage_error(err, err_size, "unknown option %s", o1);
            } else {
                rc = usage_error(err, err_size, "unknown option %s", args[optind - 1]);
            }
            break;
        }
    }
    if (rc == 0 && !o->help) {
        rc = parse_words(args + optind, (size_t)(argc - optind), o, err, err_size);
        if (rc == 0 && !o->help)
            rc = check_options(o, seen, err, err_size);
    }
    free(args);
    optind = 0;
    return rc;
}

/* ---- the URL ---------------------------------------------------------------------- */

int ctl_default_url(const char *host, unsigned port, bool tls, char *buf, size_t size)
{
    if (port == 0 || port > 65535)
        return -EINVAL;
    const char *h = host != NULL && host[0] != '\0' ? host : "127.0.0.1";
    struct in_addr a4;
    struct in6_addr a6;
    bool v6 = false;
    if (inet_pton(AF_INET, h, &a4) == 1) {
        if (a4.s_addr == htonl(INADDR_ANY))
            h = "127.0.0.1";
    } else if (inet_pton(AF_INET6, h, &a6) == 1) {
        v6 = true;
        if (IN6_IS_ADDR_UNSPECIFIED(&a6))
            h = "::1";
    }
    int n = snprintf(buf, size, "%s://%s%s%s:%u", tls ? "https" : "http", v6 ? "[" : "", h,
                     v6 ? "]" : "", port);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static bool is_loopback_host(const char *host)
{
    struct in_addr a4;
    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
        return true;
    return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* Whether part of u is there: curl_url_get() fails for a part that is not. */
static bool has_part(CURLU *u, CURLUPart what)
{
    char *v = NULL;
    CURLUcode uc = curl_url_get(u, what, &v, 0);
    bool present = uc == CURLUE_OK && v != NULL && v[0] != '\0';
    curl_free(v);
    return present;
}

int ctl_check_url(const char *url, char *out, size_t size, bool *loopback, char *why,
                  size_t why_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *full = NULL;
    int rc = -EINVAL;
    why[0] = '\0';
    if (u == NULL) {
        snprintf(why, why_size, "out of memory");
        return -ENOMEM;
    }
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        snprintf(why, why_size, "not an http:// or https:// URL");
    else if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        snprintf(why, why_size, "not a URL");
    else if (has_part(u, CURLUPART_USER) || has_part(u, CURLUPART_PASSWORD))
        snprintf(why, why_size, "a user or password in the URL (the key goes in --key-file)");
    else if (has_part(u, CURLUPART_QUERY) || has_part(u, CURLUPART_FRAGMENT))
        snprintf(why, why_size, "a query or fragment in the URL (only a path prefix may follow)");
    else if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
        snprintf(why, why_size, "not a URL");
    else {
        size_t len = strlen(full);
        while (len > 0 && full[len - 1] == '/')
            len--;
        if (len >= size) {
            snprintf(why, why_size, "too long");
        } else {
            memcpy(out, full, len);
            out[len] = '\0';
            *loopback = is_loopback_host(host);
            rc = 0;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(full);
    curl_url_cleanup(u);
    return rc;
}

int ctl_escape(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(out);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
        size_t need = plain ? 1 : 3;
        if (len + need >= size)
            return -ENAMETOOLONG;
        if (plain) {
            out[len++] = (char)c;
        } else {
            out[len++] = '%';
            out[len++] = hex[c >> 4];
            out[len++] = hex[c & 15];
        }
        out[len] = '\0';
    }
    return 0;
}

/* ---- the key ---------------------------------------------------------------------------- */

int ctl_read_key(const char *path, char *key, size_t size, char *why, size_t why_size)
{
    char buf[CTL_KEY_FILE_READ_MAX];
    size_t len = 0;
    int err = 0;
    why[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        err = -errno;
        snprintf(why, why_size, "cannot open: %s", strerror(-err));
        return err;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err = -errno;
        snprintf(why, why_size, "cannot stat: %s", strerror(-err));
    } else if (S_ISREG(st.st_mode) && (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        /* as ssh with a private key: a secret others can read is no longer one */
        err = -EPERM;
        snprintf(why, why_size, "%s by other users (mode %04o); chmod o-rwx it",
                 (st.st_mode & S_IROTH) ? "readable" : "writable", (unsigned)(st.st_mode & 07777));
    } else if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        err = -EINVAL;
        snprintf(why, why_size, "not a regular file or a pipe");
    }
    while (err == 0 && len < sizeof(buf) && memchr(buf, '\n', len) == NULL) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = -errno;
            snprintf(why, why_size, "cannot read: %s", strerror(-err));
        }
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (err == 0) {
        char *nl = memchr(buf, '\n', len);
        size_t klen = nl != NULL ? (size_t)(nl - buf) : len;
        if (klen > 0 && buf[klen - 1] == '\r')
            klen--;
        if (klen == 0) {
            err = -EINVAL;
            snprintf(why, why_size, "empty: the key is the first line of the file");
        } else if (klen > AUTH_KEY_MAX || klen >= size) {
            err = -EINVAL;
            snprintf(why, why_size, "its first line is longer than a key may be (%d characters)",
                     AUTH_KEY_MAX);
        }
        for (size_t i = 0; err == 0 && i < klen; i++) {
            unsigned char c = (unsigned char)buf[i];
            if (c <= 0x20 || c >= 0x7f) {
                err = -EINVAL;
                snprintf(why, why_size,
                         "character %zu of its first line is not visible ASCII (a key never "
                         "holds spaces or control characters)",
                         i + 1);
            }
        }
        if (err == 0) {
            memcpy(key, buf, klen);
            key[klen] = '\0';
        }
    }
    explicit_bzero(buf, sizeof(buf));
    return err;
}

/* ---- exit statuses -------------------------------------------------------------- */

int ctl_exit_for_status(long status)
{
    if (status <= 0)
        return CTL_EXIT_UNREACHABLE;
    if (status >= 200 && status <= 299)
        return CTL_EXIT_OK;
    if (status == 404)
        return CTL_EXIT_NOT_FOUND;
    if (status == 401 || status == 403)
        return CTL_EXIT_REFUSED;
    return CTL_EXIT_FAILED;
}

/* ---- HTTP ------------------------------------------------------------------------------- */

struct ctl {
    const struct ctl_options *o;
    char base[CTL_URL_MAX]; /* no trailing slash */
    char url[CTL_URL_MAX + 1024];
    CURL *easy;
    struct curl_slist *headers;
    bool have_key;
    char curl_error[CURL_ERROR_SIZE];
    struct strbuf body; /* the answer */
    bool too_big;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct ctl *c = arg;
    size_t len = size * n;
    if (c->body.len + len > CTL_RESPONSE_MAX) {
        c->too_big = true;
        return 0; /* aborts the transfer */
    }
    strbuf_add(&c->body, p, len);
    return c->body.failed ? 0 : len;
}

/* What an operator can do about a failure, or "". */
static const char *hint(const struct ctl *c, CURLcode cc, long status)
{
    bool https = strncasecmp(c->base, "https:", 6) == 0;
    if (status == 401)
        return c->have_key ? "; the daemon does not know the key of --key-file"
                           : "; the daemon asks for an API key: pass --key-file";
    if (status == 403)
        return "; the key lacks the scope (orders:read for orders, admin for dlq)";
    if (status != 0)
        return "";
    switch (cc) {
    case CURLE_PEER_FAILED_VERIFICATION:
        return "; for a self-signed certificate or a private CA pass --ca-file (e.g. the "
               "daemon's tls_cert), and a --url with a name the certificate holds";
    case CURLE_SSL_CONNECT_ERROR:
        return https ? "; does the daemon serve plain http?" : "";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
        return https ? "" : "; does the daemon serve https?";
    case CURLE_OPERATION_TIMEDOUT:
        return " (--timeout)";
    case CURLE_COULDNT_CONNECT:
        return c->o->url == NULL ? "; is orderd running? (the URL is from the config's listen; "
                                   "--url to ask another)"
                                 : "; is orderd running?";
    default:
        return "";
    }
}

/*
 * One request: method to base + path (already escaped). 0 with the answer in
 * c->body; else the exit status, the failure printed.
 */
static int request(struct ctl *c, const char *method, const char *path)
{
    CURL *e = c->easy;
    free(strbuf_finish(&c->body));
    c->body = (struct strbuf)STRBUF_INIT;
    c->too_big = false;
    c->curl_error[0] = '\0';
    int n = snprintf(c->url, sizeof(c->url), "%s%s", c->base, path);
    if (n < 0 || (size_t)n >= sizeof(c->url)) {
        fprintf(stderr, "orderd ctl: %s %s%s: URL too long\n", method, c->base, path);
        return CTL_EXIT_USAGE;
    }
    CURLcode cc = curl_easy_setopt(e, CURLOPT_URL, c->url);
    if (cc == CURLE_OK && strcmp(method, "POST") == 0) {
        cc = curl_easy_setopt(e, CURLOPT_POST, 1L);
        if (cc == CURLE_OK)
            cc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        if (cc == CURLE_OK)
            cc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        if (cc == CURLE_OK)
            cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    } else if (cc == CURLE_OK) {
        cc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        if (cc == CURLE_OK)
            cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                                  strcmp(method, "GET") == 0 ? NULL : method);
    }
    if (cc == CURLE_OK)
        cc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (c->body.failed) {
        fprintf(stderr, "orderd ctl: %s %s: out of memory\n", method, c->url);
        return CTL_EXIT_FAILED;
    }
    if (c->too_big) {
        fprintf(stderr, "orderd ctl: %s %s: the answer is larger than %u MiB\n", method, c->url,
                CTL_RESPONSE_MAX >> 20);
        return CTL_EXIT_FAILED;
    }
    if (cc != CURLE_OK) {
        char why[CURL_ERROR_SIZE + 32];
        ctl_cell(c->curl_error[0] != '\0' ? c->curl_error : curl_easy_strerror(cc), 0, why,
                 sizeof(why));
        fprintf(stderr, "orderd ctl: %s %s: no answer: %s%s\n", method, c->url, why,
                hint(c, cc, 0));
        return status > 0 ? CTL_EXIT_FAILED : CTL_EXIT_UNREACHABLE;
    }
    int rc = ctl_exit_for_status(status);
    if (rc != CTL_EXIT_OK) {
        char why[512];
        ctl_describe_problem(c->body.p != NULL ? c->body.p : "", c->body.len, why, sizeof(why));
        fprintf(stderr, "orderd ctl: %s %s: %ld %s%s\n", method, c->url, status,
                why[0] != '\0' ? why : "(no body)", hint(c, CURLE_OK, status));
    }
    return rc;
}

/* The answer as a JSON object, or NULL (printed). */
static json_t *answer_object(struct ctl *c, const char *method)
{
    json_error_t jerr;
    json_t *v = json_loadb(c->body.p != NULL ? c->body.p : "", c->body.len, 0, &jerr);
    if (!json_is_object(v)) {
        char why[256];
        ctl_cell(v == NULL ? jerr.text : "not an object", 200, why, sizeof(why));
        fprintf(stderr, "orderd ctl: %s %s: the answer is not the JSON the API promises: %s\n",
                method, c->url, why);
        json_decref(v);
        return NULL;
    }
    return v;
}

/* ---- the commands ------------------------------------------------------------------------ */

static int cmd_get_object(struct ctl *c, const char *path)
{
    int rc = request(c, "GET", path);
    if (rc != CTL_EXIT_OK)
        return rc;
    json_t *v = answer_object(c, "GET");
    if (v == NULL)
        return CTL_EXIT_FAILED;
    if (c->o->json)
        ctl_print_raw(c->body.p, c->body.len, stdout);
    else
        ctl_print_fields(v, stdout);
    json_decref(v);
    return CTL_EXIT_OK;
}

static int add_query(char *q, size_t size, const char *name, const char *value)
{
    if (value == NULL)
        return 0;
    size_t len = strlen(q);
    int n = snprintf(q + len, size - len, "%c%s=", strchr(q, '?') == NULL ? '?' : '&', name);
    if (n < 0 || (size_t)n >= size - len)
        return -ENAMETOOLONG;
    return ctl_escape(value, q, size);
}

/* orders list, dlq list: a page, or with --all every page. */
static int cmd_list(struct ctl *c, bool dlq)
{
    const struct ctl_options *o = c->o;
    const char *key = dlq ? "dead_letters" : "orders";
    struct ctl_table *t = NULL;
    if (!o->json) {
        t = ctl_list_table_new(dlq);
        if (t == NULL) {
            fprintf(stderr, "orderd ctl: out of memory\n");
            return CTL_EXIT_FAILED;
        }
    }
    unsigned limit = o->limit != 0 ? o->limit : o->all ? LIST_LIMIT_ALL : 0;
    char limit_text[16];
    snprintf(limit_text, sizeof(limit_text), "%u", limit);
    char *cursor = o->cursor != NULL ? strdup(o->cursor) : NULL;
    int rc = CTL_EXIT_OK;
    time_t now = time(NULL);
    do {
        char path[CTL_URL_MAX];
        snprintf(path, sizeof(path), "%s", dlq ? "/admin/dlq" : "/orders");
        if (add_query(path, sizeof(path), "status", o->status) != 0 ||
            add_query(path, sizeof(path), "customer_id", o->customer) != 0 ||
            add_query(path, sizeof(path), "limit", limit != 0 ? limit_text : NULL) != 0 ||
            add_query(path, sizeof(path), "cursor", cursor) != 0) {
            fprintf(stderr, "orderd ctl: the query is too long\n");
            rc = CTL_EXIT_USAGE;
            break;
        }
        if ((rc = request(c, "GET", path)) != CTL_EXIT_OK)
            break;
        json_t *page = answer_object(c, "GET");
        json_t *items = json_object_get(page, key);
        json_t *next = json_object_get(page, "next_cursor");
        if (page != NULL &&
            (!json_is_array(items) || !(json_is_string(next) || json_is_null(next)))) {
            fprintf(stderr, "orderd ctl: GET %s: the answer has no \"%s\" and \"next_cursor\"\n",
                    c->url, key);
            json_decref(page);
            page = NULL;
        }
        if (page == NULL) {
            rc = CTL_EXIT_FAILED;
            break;
        }
        if (o->json && !o->all) {
            ctl_print_raw(c->body.p, c->body.len, stdout);
        } else if (o->json) {
            ctl_print_items(items, stdout);
        } else if (ctl_list_add_rows(t, items, dlq, now) != 0) {
            rc = CTL_EXIT_FAILED;
            fprintf(stderr, "orderd ctl: out of memory\n");
        }
        const char *nc = json_string_value(next);
        if (rc == CTL_EXIT_OK && nc != NULL && cursor != NULL && strcmp(nc, cursor) == 0) {
            fprintf(stderr, "orderd ctl: GET %s: the daemon handed out the same cursor again\n",
                    c->url);
            rc = CTL_EXIT_FAILED;
        }
        free(cursor);
        cursor = nc != NULL ? strdup(nc) : NULL;
        json_decref(page);
        if (rc == CTL_EXIT_OK && nc != NULL && cursor == NULL) {
            fprintf(stderr, "orderd ctl: out of memory\n");
            rc = CTL_EXIT_FAILED;
        }
    } while (rc == CTL_EXIT_OK && o->all && cursor != NULL);
    ctl_list_print(t, dlq, cursor, rc == CTL_EXIT_OK); /* what came, also before a failure */
    free(cursor);
    ctl_table_free(t);
    return rc;
}

static int id_path(char *path, size_t size, const char *prefix, const char *id, const char *suffix)
{
    snprintf(path, size, "%s", prefix);
    if (ctl_escape(id, path, size) != 0 || strlen(path) + strlen(suffix) >= size) {
        fprintf(stderr, "orderd ctl: the ID is too long\n");
        return CTL_EXIT_USAGE;
    }
    strcat(path, suffix);
    return CTL_EXIT_OK;
}

static int cmd_dlq_change(struct ctl *c)
{
    const struct ctl_options *o = c->o;
    char path[CTL_URL_MAX];
    const char *method = o->cmd == CTL_CMD_DLQ_DELETE ? "DELETE" : "POST";
    int rc = CTL_EXIT_OK;
    if (o->cmd == CTL_CMD_DLQ_REDRIVE_ALL)
        snprintf(path, sizeof(path), "/admin/dlq/redrive");
    else
        rc = id_path(path, sizeof(path), "/admin/dlq/", o->id,
                     o->cmd == CTL_CMD_DLQ_REDRIVE ? "/redrive" : "");
    if (rc == CTL_EXIT_OK)
        rc = request(c, method, path);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (o->cmd == CTL_CMD_DLQ_DELETE) { /* 204, no body */
        if (!o->json)
            printf("deleted: dead letter %s; its order stays, discarded\n", o->id);
        return CTL_EXIT_OK;
    }
    json_t *v = answer_object(c, method);
    if (v == NULL)
        return CTL_EXIT_FAILED;
    if (o->json) {
        ctl_print_raw(c->body.p, c->body.len, stdout);
    } else if (o->cmd == CTL_CMD_DLQ_REDRIVE_ALL) {
        json_int_t n = json_integer_value(json_object_get(v, "redriven"));
        printf("redriven: %" JSON_INTEGER_FORMAT " dead letter%s queued again\n", n,
               n == 1 ? "" : "s");
    } else {
        printf("redriven: %s queued again\n", o->id);
    }
    json_decref(v);
    return CTL_EXIT_OK;
}

static int run(struct ctl *c)
{
    char path[CTL_URL_MAX];
    switch (c->o->cmd) {
    case CTL_CMD_ORDERS_GET:
        if (id_path(path, sizeof(path), "/orders/", c->o->id, "") != CTL_EXIT_OK)
            return CTL_EXIT_USAGE;
        return cmd_get_object(c, path);
    case CTL_CMD_STATS:
        return cmd_get_object(c, "/status.json");
    case CTL_CMD_ORDERS_LIST:
        return cmd_list(c, false);
    case CTL_CMD_DLQ_LIST:
        return cmd_list(c, true);
    case CTL_CMD_DLQ_REDRIVE:
    case CTL_CMD_DLQ_REDRIVE_ALL:
    case CTL_CMD_DLQ_DELETE:
        return cmd_dlq_change(c);
    case CTL_CMD_NONE:
        break;
    }
    return CTL_EXIT_USAGE;
}

static bool append_header(struct ctl *c, const char *line)
{
    struct curl_slist *l = curl_slist_append(c->headers, line);
    if (l == NULL) {
        fprintf(stderr, "orderd ctl: out of memory\n");
        return false;
    }
    c->headers = l;
    return true;
}

/* Frees the headers, the key's line wiped first. */
static void free_headers(struct ctl *c)
{
    for (struct curl_slist *l = c->headers; l != NULL; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(c->headers);
    c->headers = NULL;
}

/* The handle and the options every request shares. 0 or -1 (printed). */
static int setup(struct ctl *c, const char *key)
{
    char auth[AUTH_KEY_MAX + 32];
    CURLcode cc = CURLE_OK;
    c->easy = curl_easy_init();
    if (c->easy == NULL) {
        fprintf(stderr, "orderd ctl: cannot start libcurl\n");
        return -1;
    }
    static const char *const fixed[] = {
        "Accept: application/json", "Expect:", "Content-Type:", /* the POSTs have no body */
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (!append_header(c, fixed[i]))
            return -1;
    if (key != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        bool ok = append_header(c, auth);
        explicit_bzero(auth, sizeof(auth));
        if (!ok)
            return -1;
    }
    CURL *e = c->easy;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->o->timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)c->o->timeout_ms);
    SET(CURLOPT_HTTPHEADER, c->headers);
    SET(CURLOPT_USERAGENT, "orderd-ctl/" ORDERD_VERSION);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_ERRORBUFFER, c->curl_error);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->o->ca_file != NULL)
        SET(CURLOPT_CAINFO, c->o->ca_file);
#undef SET
    if (cc != CURLE_OK) {
        fprintf(stderr, "orderd ctl: libcurl refused an option: %s\n", curl_easy_strerror(cc));
        return -1;
    }
    return 0;
}

int ctl_main(const struct config *cfg, int argc, char **argv)
{
    struct ctl_options o;
    char err[ERR_MAX];
    if (ctl_parse_args(argc, argv, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "orderd ctl: %s (orderd ctl --help)\n", err);
        return CTL_EXIT_USAGE;
    }
    if (o.help) {
        ctl_usage(stdout);
        return fflush(stdout) == 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }

    struct ctl c = {.o = &o, .body = STRBUF_INIT};
    bool loopback = true;
    if (o.url != NULL) {
        if (ctl_check_url(o.url, c.base, sizeof(c.base), &loopback, err, sizeof(err)) != 0) {
            fprintf(stderr, "orderd ctl: --url %s: %s\n", o.url, err);
            return CTL_EXIT_USAGE;
        }
    } else if (cfg == NULL) {
        fprintf(stderr, "orderd ctl: no config file to find the daemon by its listen address; "
                        "pass --url (or -c FILE)\n");
        return CTL_EXIT_USAGE;
    } else {
        int r = ctl_default_url(cfg->listen_host, cfg->listen_port, cfg->tls_cert != NULL, c.base,
                                sizeof(c.base));
        if (r != 0) {
            fprintf(stderr,
                    "orderd ctl: [server] listen = %s names no port to ask (0 is any free "
                    "port); pass --url\n",
                    cfg->listen != NULL ? cfg->listen : "");
            return CTL_EXIT_USAGE;
        }
        char host[256];
        snprintf(host, sizeof(host), "%s", cfg->listen_host != NULL ? cfg->listen_host : "");
        loopback = is_loopback_host(host) || strcmp(host, "::1") == 0 ||
                   strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
    }
    if (o.ca_file != NULL && access(o.ca_file, R_OK) != 0) {
        fprintf(stderr, "orderd ctl: --ca-file %s: %s\n", o.ca_file, strerror(errno));
        return CTL_EXIT_USAGE;
    }
    char key[AUTH_KEY_MAX + 1];
    if (o.key_file != NULL) {
        if (ctl_read_key(o.key_file, key, sizeof(key), err, sizeof(err)) != 0) {
            fprintf(stderr, "orderd ctl: --key-file %s: %s\n", o.key_file, err);
            return CTL_EXIT_USAGE;
        }
        c.have_key = true;
        if (!loopback && strncasecmp(c.base, "http:", 5) == 0)
            fprintf(stderr,
                    "orderd ctl: warning: the API key goes unencrypted to %s (plain "
                    "http); use https\n",
                    c.base);
    }

    int rc;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "orderd ctl: cannot start libcurl\n");
        rc = CTL_EXIT_UNREACHABLE;
    } else {
        rc = setup(&c, c.have_key ? key : NULL) == 0 ? run(&c) : CTL_EXIT_FAILED;
        if (c.easy != NULL)
            curl_easy_cleanup(c.easy);
        free_headers(&c); /* one holds the key */
        curl_global_cleanup();
    }
    explicit_bzero(key, sizeof(key));
    free(strbuf_finish(&c.body));
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "orderd ctl: cannot write the output: %s\n", strerror(errno));
        if (rc == CTL_EXIT_OK)
            rc = CTL_EXIT_USAGE;
    }
    return rc;
}
