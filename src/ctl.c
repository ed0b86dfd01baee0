/*
 * ctl.c — `orderd ctl` (see ctl.h): the operator's commands against the
 * running daemon's HTTP API, with libcurl, answers read with jansson.
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
 * Output: tables and "key: value" lines for people, every string cleaned of
 * control characters (a customer's text never drives the terminal); --json
 * gives the API's JSON as it answered (for --all, one item a line). Every
 * failure is one line on stderr naming the request, what came back and the
 * daemon's request id, and its own exit status (ctl_int.h, orderd(8) CTL).
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
#include <sys/ioctl.h>
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

/* ---- text for people ------------------------------------------------------------ */

/*
 * The code point at s (UTF-8, at most 4 bytes, NUL-terminated): its length in
 * *len, or -1 for an invalid sequence (then *len = 1).
 */
static long decode_utf8(const unsigned char *s, size_t *len)
{
    unsigned char c = s[0];
    long cp;
    size_t n;
    *len = 1;
    if (c < 0x80)
        return c;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return -1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1; /* also stops at the NUL */
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *len = n;
    return cp;
}

/* Characters that would move or restyle the terminal, or break a line. */
static bool is_control(long cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/*
 * s cleaned into a new string: control characters a space, invalid UTF-8 a
 * '?'; collapse: runs of spaces one, ends trimmed; else the end trimmed only.
 * NULL when memory ran out.
 */
static char *clean(const char *s, bool collapse)
{
    size_t n = strlen(s), k = 0;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t len;
        long cp = decode_utf8(p, &len);
        if (cp == ' ' || (cp >= 0 && is_control(cp))) {
            if (!collapse || (k > 0 && out[k - 1] != ' '))
                out[k++] = ' ';
        } else if (cp < 0) {
            out[k++] = '?';
        } else {
            memcpy(out + k, p, len);
            k += len;
        }
        p += len;
    }
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = '\0';
    return out;
}

size_t ctl_columns(const char *s)
{
    size_t cols = 0;
    for (; *s != '\0'; s++)
        cols += ((unsigned char)*s & 0xc0) != 0x80;
    return cols;
}

/* Copies whole code points of s (clean) to out[size] up to cols columns; the columns copied. */
static size_t copy_columns(const char *s, size_t cols, char *out, size_t size, size_t *used)
{
    size_t k = *used, c = 0;
    while (*s != '\0' && c < cols) {
        size_t len = 1;
        while ((((unsigned char)s[len]) & 0xc0) == 0x80)
            len++;
        if (k + len >= size)
            break;
        memcpy(out + k, s, len);
        k += len;
        s += len;
        c++;
    }
    out[k] = '\0';
    *used = k;
    return c;
}

size_t ctl_cell(const char *s, size_t max_cols, char *out, size_t size)
{
    if (size == 0)
        return 0;
    out[0] = '\0';
    char *c = clean(s != NULL ? s : "", true);
    if (c == NULL)
        return 0;
    size_t used = 0, cols = ctl_columns(c), wrote;
    if (max_cols == 0 || cols <= max_cols) {
        wrote = copy_columns(c, cols, out, size, &used);
    } else if (max_cols <= 3) {
        wrote = copy_columns(c, max_cols, out, size, &used);
    } else {
        wrote = copy_columns(c, max_cols - 3, out, size, &used);
        /* a cut at a space would leave "word ...": end on the word */
        while (used > 0 && out[used - 1] == ' ') {
            out[--used] = '\0';
            wrote--;
        }
        wrote += copy_columns("...", 3, out, size, &used);
    }
    free(c);
    return wrote;
}

int ctl_parse_time(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n != 19)
        return -EINVAL;
    const char *p = s + n;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (strcmp(p, "Z") != 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return -EINVAL;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *out = (int64_t)timegm(&tm);
    return 0;
}

void ctl_format_age(int64_t s, char *buf, size_t size)
{
    long long v = s < 0 ? 0 : (long long)s;
    if (v < 60)
        snprintf(buf, size, "%llds", v);
    else if (v < 3600)
        snprintf(buf, size, "%lldm", v / 60);
    else if (v < 86400)
        snprintf(buf, size, "%lldh%02lldm", v / 3600, v % 3600 / 60);
    else
        snprintf(buf, size, "%lldd%02lldh", v / 86400, v % 86400 / 3600);
}

/* ---- tables ------------------------------------------------------------------------- */

struct ctl_table {
    size_t ncols;
    unsigned right;
    char **cells; /* rows + 1 (the header) times ncols, cleaned */
    size_t rows, cap;
};

struct ctl_table *ctl_table_new(size_t ncols, const char *const *headers, unsigned right_mask)
{
    struct ctl_table *t = calloc(1, sizeof(*t));
    if (t == NULL || ncols == 0)
        goto fail;
    t->ncols = ncols;
    t->right = right_mask;
    /* the header is row "-1": kept as the first ncols cells */
    t->cells = calloc(16 * ncols, sizeof(*t->cells));
    if (t->cells == NULL)
        goto fail;
    t->cap = 16;
    for (size_t i = 0; i < ncols; i++)
        if ((t->cells[i] = clean(headers[i], true)) == NULL)
            goto fail;
    return t;
fail:
    ctl_table_free(t);
    return NULL;
}

int ctl_table_add(struct ctl_table *t, const char *const *cells)
{
    if (t->rows + 2 > t->cap) {
        size_t cap = t->cap * 2;
        char **p = realloc(t->cells, cap * t->ncols * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        t->cells = p;
        t->cap = cap;
    }
    char **row = t->cells + (t->rows + 1) * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = clean(cells[i] != NULL ? cells[i] : "-", true);
        if (row[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(row[j]);
            return -ENOMEM;
        }
    }
    t->rows++;
    return 0;
}

size_t ctl_table_rows(const struct ctl_table *t) { return t->rows; }

void ctl_table_print(const struct ctl_table *t, size_t width, FILE *out)
{
    size_t nc = t->ncols, w[32] = {0}, fixed = 0;
    if (nc > sizeof(w) / sizeof(w[0]))
        return;
    for (size_t r = 0; r <= t->rows; r++)
        for (size_t i = 0; i + 1 < nc; i++) {
            size_t c = ctl_columns(t->cells[r * nc + i]);
            if (c > w[i])
                w[i] = c;
        }
    for (size_t i = 0; i + 1 < nc; i++)
        fixed += w[i] + 2;
    size_t flex = width > fixed + CTL_FLEX_MIN ? width - fixed : CTL_FLEX_MIN;
    for (size_t r = 0; r <= t->rows; r++) {
        struct strbuf line = STRBUF_INIT;
        char *const *row = t->cells + r * nc;
        for (size_t i = 0; i + 1 < nc; i++) {
            size_t pad = w[i] - ctl_columns(row[i]);
            bool right = (t->right >> i) & 1u;
            if (right)
                strbuf_printf(&line, "%*s", (int)pad, "");
            strbuf_str(&line, row[i]);
            strbuf_printf(&line, "%*s", right ? 2 : (int)pad + 2, "");
        }
        const char *last = row[nc - 1];
        size_t size = strlen(last) + 4;
        char *cut = malloc(size);
        if (cut != NULL) {
            ctl_cell(last, flex, cut, size);
            strbuf_str(&line, cut);
            free(cut);
        }
        char *text = strbuf_finish(&line);
        if (text != NULL) {
            size_t len = strlen(text);
            while (len > 0 && text[len - 1] == ' ')
                len--;
            fprintf(out, "%.*s\n", (int)len, text);
            free(text);
        }
    }
}

void ctl_table_free(struct ctl_table *t)
{
    if (t == NULL)
        return;
    if (t->cells != NULL)
        for (size_t i = 0; i < (t->rows + 1) * t->ncols; i++)
            free(t->cells[i]);
    free(t->cells);
    free(t);
}

/* ---- "key: value" lines -------------------------------------------------------------- */

/* The lines of a value, each already clean, into lines (a strbuf of '\n'-separated text). */
static void value_lines(const char *key, const json_t *v, struct strbuf *b)
{
    if (json_is_null(v)) {
        strbuf_str(b, "-");
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        /* each line of the text, cleaned on its own */
        while (true) {
            const char *nl = strchr(s, '\n');
            size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
            char *part = strndup(s, n), *c = part ? clean(part, false) : NULL;
            if (c != NULL)
                strbuf_str(b, c);
            free(c);
            free(part);
            if (nl == NULL)
                break;
            strbuf_str(b, "\n");
            s = nl + 1;
        }
    } else if (json_is_integer(v)) {
        strbuf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        strbuf_printf(b, "%.3f", json_real_value(v));
    } else if (json_is_boolean(v)) {
        strbuf_str(b, json_is_true(v) ? "true" : "false");
    } else {
        bool items = strcmp(key, "items") == 0 && json_is_array(v) && json_array_size(v) > 0;
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it)
        {
            if (!json_is_string(json_object_get(it, "item")) ||
                !json_is_integer(json_object_get(it, "quantity")))
                items = false;
        }
        if (items) {
            json_array_foreach(v, i, it)
            {
                char *c = clean(json_string_value(json_object_get(it, "item")), true);
                strbuf_printf(b, "%s%" JSON_INTEGER_FORMAT " x %s", i > 0 ? "\n" : "",
                              json_integer_value(json_object_get(it, "quantity")),
                              c != NULL ? c : "");
                free(c);
            }
        } else {
            /* ASCII only, control characters escaped: safe for a terminal */
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
            if (text != NULL)
                strbuf_str(b, text);
            free(text);
        }
    }
}

void ctl_print_fields(const json_t *obj, FILE *out)
{
    const char *key;
    const json_t *v;
    size_t kw = 0;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t c = ctl_columns(key);
        if (c > kw)
            kw = c;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        struct strbuf b = STRBUF_INIT;
        value_lines(key, v, &b);
        char *text = strbuf_finish(&b);
        char *k = clean(key, true);
        if (text != NULL && k != NULL) {
            const char *s = text;
            bool first = true;
            do {
                const char *nl = strchr(s, '\n');
                int n = nl != NULL ? (int)(nl - s) : (int)strlen(s);
                if (first) {
                    int pad = (int)(kw - ctl_columns(k));
                    if (n > 0)
                        fprintf(out, "%s:%*s %.*s\n", k, pad, "", n, s);
                    else
                        fprintf(out, "%s:\n", k);
                } else {
                    fprintf(out, "%*s %.*s\n", (int)kw + 1, "", n, s);
                }
                first = false;
                s = nl != NULL ? nl + 1 : NULL;
            } while (s != NULL);
        }
        free(k);
        free(text);
    }
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

/* The one line of an error answer: "TITLE: DETAIL (field: message; ...) [request ID]". */
static void describe_problem(const char *body, size_t len, char *out, size_t size)
{
    json_t *p = json_loadb(body, len, 0, NULL);
    struct strbuf b = STRBUF_INIT;
    const char *title = json_string_value(json_object_get(p, "title"));
    const char *detail = json_string_value(json_object_get(p, "detail"));
    const char *rid = json_string_value(json_object_get(p, "request_id"));
    if (title != NULL)
        strbuf_str(&b, title);
    if (detail != NULL)
        strbuf_printf(&b, "%s%s", title != NULL ? ": " : "", detail);
    json_t *errors = json_object_get(p, "errors");
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        const char *f = json_string_value(json_object_get(e, "field"));
        const char *m = json_string_value(json_object_get(e, "message"));
        strbuf_printf(&b, "%s%s: %s", i == 0 ? " (" : "; ", f ? f : "?", m ? m : "?");
    }
    if (json_array_size(errors) > 0)
        strbuf_str(&b, ")");
    if (title == NULL && detail == NULL && len > 0) /* not a problem document */
        strbuf_add(&b, body, len < 200 ? len : 200);
    if (rid != NULL)
        strbuf_printf(&b, " [request %s]", rid);
    char *text = strbuf_finish(&b);
    ctl_cell(text != NULL ? text : "", 400, out, size);
    free(text);
    json_decref(p);
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
        describe_problem(c->body.p != NULL ? c->body.p : "", c->body.len, why, sizeof(why));
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

/* --json: the answer as it came, one line. */
static void print_raw(const struct ctl *c)
{
    if (c->body.len == 0)
        return;
    fwrite(c->body.p, 1, c->body.len, stdout);
    if (c->body.p[c->body.len - 1] != '\n')
        fputc('\n', stdout);
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
        print_raw(c);
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

static size_t table_width(void)
{
    const char *env = getenv("COLUMNS");
    if (env != NULL && env[0] != '\0' && strspn(env, "0123456789") == strlen(env) &&
        strlen(env) < 6 && atoi(env) > 0)
        return (size_t)atoi(env);
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return CTL_WIDTH_DEFAULT;
}

static const char *str_or_dash(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "-";
}

static int add_row(struct ctl_table *t, const json_t *item, bool dlq, time_t now)
{
    char attempts[24], age[32];
    const json_t *a = json_object_get(item, "attempts");
    if (json_is_integer(a))
        snprintf(attempts, sizeof(attempts), "%" JSON_INTEGER_FORMAT, json_integer_value(a));
    else
        snprintf(attempts, sizeof(attempts), "-");
    if (dlq) {
        int64_t at;
        if (ctl_parse_time(json_string_value(json_object_get(item, "dead_lettered_at")), &at) == 0)
            ctl_format_age((int64_t)now - at, age, sizeof(age));
        else
            snprintf(age, sizeof(age), "-");
        const char *cells[] = {str_or_dash(item, "order_id"), attempts, age,
                               str_or_dash(item, "last_error")};
        return ctl_table_add(t, cells);
    }
    const char *cells[] = {str_or_dash(item, "order_id"), str_or_dash(item, "status"),
                           str_or_dash(item, "customer_id"), attempts,
                           str_or_dash(item, "created_at")};
    return ctl_table_add(t, cells);
}

/* orders list, dlq list: a page, or with --all every page. */
static int cmd_list(struct ctl *c, bool dlq)
{
    const struct ctl_options *o = c->o;
    static const char *const orders_h[] = {"ID", "STATUS", "CUSTOMER", "ATTEMPTS", "CREATED"};
    static const char *const dlq_h[] = {"ID", "ATTEMPTS", "AGE", "LAST ERROR"};
    const char *key = dlq ? "dead_letters" : "orders";
    struct ctl_table *t = NULL;
    if (!o->json) {
        t = dlq ? ctl_table_new(4, dlq_h, 1u << 1 | 1u << 2) : ctl_table_new(5, orders_h, 1u << 3);
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
        size_t i;
        json_t *item;
        if (o->json && !o->all) {
            print_raw(c);
        } else if (o->json) {
            json_array_foreach(items, i, item)
            {
                json_dumpf(item, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
                fputc('\n', stdout);
            }
            fflush(stdout); /* a stream: each page as it comes */
        } else {
            json_array_foreach(items, i, item)
            {
                if (add_row(t, item, dlq, now) != 0) {
                    rc = CTL_EXIT_FAILED;
                    fprintf(stderr, "orderd ctl: out of memory\n");
                    break;
                }
            }
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
    if (t != NULL && ctl_table_rows(t) > 0)
        ctl_table_print(t, table_width(), stdout); /* what came, also before a failure */
    if (rc == CTL_EXIT_OK && t != NULL) {
        if (ctl_table_rows(t) == 0)
            fprintf(stderr, "no %s\n", dlq ? "dead letters" : "orders");
        if (cursor != NULL)
            fprintf(stderr, "more: --cursor %s for the next page, or --all\n", cursor);
    }
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
        print_raw(c);
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
