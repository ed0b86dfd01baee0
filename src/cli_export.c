/*
 * cli_export.c — `orderd -c FILE export [--status S] [--before TIME]
 * [--customer ID]` (cli.h): every order that matches, as one compact JSON
 * object a line (NDJSON) on stdout — the object GET /orders/{id} answers
 * (api_order_json) — from one consistent snapshot of the store, so that an
 * operator can archive what retention is about to delete.
 *
 * The store is opened read_only (store.h): nothing is created or migrated,
 * and the export runs beside a running daemon, which goes on taking orders
 * (its commits after the snapshot are not in the output). store_export()
 * hands over one order at a time; each is written into one buffer that
 * grows to the largest line and is then reused, through stdout's own 1 MiB
 * buffer: memory does not depend on the number of orders.
 *
 * Exit status (orderd(8), EXPORT):
 *   0  every matching order was written; "exported N orders" on stderr
 *   1  usage (an unknown option, a bad status or time: one line and the
 *      usage) or the output failed (a closed pipe, a full disk: one line)
 *   2  storage: the database cannot be opened (missing, another schema
 *      version, the server down) or a read failed midway, as the store's
 *      log line says; the output then holds only the orders before it
 *
 * Runs on the main thread, alone (main.c).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_json.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "store.h"

#define STDOUT_BUFFER (1024 * 1024)

/* store_export_fn's reasons to stop (positive: store errors are negative). */
enum { STOP_WRITE = 1, STOP_NOMEM = 2 };

struct export_out {
    FILE *to;
    char *line; /* the current line's JSON, reused */
    size_t cap;
    uint64_t written; /* orders written */
    int write_errno;  /* STOP_WRITE: why */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: orderd -c FILE export [--status S] [--before TIME] [--customer ID]\n"
            "  Writes every matching order to stdout, one JSON object a line (as GET\n"
            "  /orders/{id} shows it), oldest first, from one snapshot of the database.\n"
            "  --status S      one of: %s\n"
            "  --before TIME   created before TIME: RFC 3339 (2026-11-01T00:00:00Z,\n"
            "                  2026-11-01T02:00:00+02:00) or a date (2026-11-01: midnight UTC)\n"
            "  --customer ID   orders of this customer_id only\n"
            "Exit status: 0 done, 1 usage or output error, 2 storage error.\n",
            store_status_names());
}

/* ---- --before ----------------------------------------------------------- */

/* n digits at *p as a number; advances *p. -1 when they are not all digits. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

static bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/*
 * "2026-11-01" (midnight UTC) or RFC 3339's date-time: "2026-11-01T00:00:00Z",
 * "...T00:00:00.250+02:00" (T/Z in either case). *ms: the instant in ms since
 * the epoch, a fraction finer than 1 ms rounded up (created before it).
 * false for anything else, or a time not after 1970-01-01T00:00:00Z.
 */
static bool parse_time(const char *s, int64_t *ms)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y = digits(&p, 4);
    if (y < 0 || *p++ != '-')
        return false;
    int mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return false;
    int d = digits(&p, 2);
    if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)))
        return false;
    int64_t t = days_from_civil(y, mo, d) * 86400 * 1000;
    if (*p != '\0') {
        if (*p != 'T' && *p != 't')
            return false;
        p++;
        int h = digits(&p, 2);
        if (h < 0 || h > 23 || *p++ != ':')
            return false;
        int mi = digits(&p, 2);
        if (mi < 0 || mi > 59 || *p++ != ':')
            return false;
        int sec = digits(&p, 2);
        if (sec < 0 || sec > 60) /* 60: a leap second, counted as the next one */
            return false;
        t += ((int64_t)h * 3600 + mi * 60 + sec) * 1000;
        if (*p == '.') {
            p++;
            int frac_digits = 0;
            int64_t frac_ms = 0;
            bool finer = false;
            for (; *p >= '0' && *p <= '9'; p++, frac_digits++) {
                if (frac_digits < 3)
                    frac_ms = frac_ms * 10 + (*p - '0');
                else
                    finer |= *p != '0';
            }
            if (frac_digits == 0 || frac_digits > 9)
                return false;
            for (int i = frac_digits; i < 3; i++)
                frac_ms *= 10;
            t += frac_ms + finer;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1;
            int oh = digits(&p, 2);
            if (oh < 0 || oh > 23 || *p++ != ':')
                return false;
            int om = digits(&p, 2);
            if (om < 0 || om > 59)
                return false;
            t -= sign * ((int64_t)oh * 3600 + om * 60) * 1000;
        } else {
            return false;
        }
        if (*p != '\0')
            return false;
    }
    if (t <= 0)
        return false;
    *ms = t;
    return true;
}

/* ---- the command line --------------------------------------------------- */

struct export_args {
    struct store_export_filter filter;
    bool help;
};

/* One line on stderr about what is wrong, then the usage line; returns 1. */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("orderd: export: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs("usage: orderd -c FILE export [--status S] [--before TIME] [--customer ID] (--help)\n",
          stderr);
    return 1;
}

static int parse_args(int argc, char **argv, struct export_args *a)
{
    static const struct option longopts[] = {
        {"status", required_argument, NULL, 's'},
        {"before", required_argument, NULL, 'b'},
        {"customer", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof(*a));
    const char *before = NULL;
    int opt, rc = 0;
    /* GNU getopt starts again from scratch with optind 0 (main.c parsed its
     * own options); "+": no permutation, so argv stays as it is; ":": the
     * errors are ours to word. */
    optind = 0;
    opterr = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        const char *name = argv[optind - 1];
        switch (opt) {
        case 's':
            if (a->filter.status != NULL)
                rc = usage_error("--status is given twice");
            else if (!store_status_valid(optarg))
                rc = usage_error("unknown status '%s'; one of: %s", optarg, store_status_names());
            else
                a->filter.status = optarg;
            break;
        case 'b':
            if (before != NULL)
                rc = usage_error("--before is given twice");
            else if (!parse_time(optarg, &a->filter.before_ms))
                rc = usage_error("--before '%s' is not a time after 1970: give RFC 3339 "
                                 "(2026-11-01T00:00:00Z, 2026-11-01T02:00:00+02:00) or a date "
                                 "(2026-11-01, midnight UTC)",
                                 optarg);
            else
                before = optarg;
            break;
        case 'u':
            if (a->filter.customer_id != NULL)
                rc = usage_error("--customer is given twice");
            else if (optarg[0] == '\0')
                rc = usage_error("--customer needs a customer_id");
            else
                a->filter.customer_id = optarg;
            break;
        case 'h':
            a->help = true;
            break;
        case ':':
            rc = usage_error("%s needs a value", name);
            break;
        default:
            if (optopt != 0)
                rc = usage_error("unknown option -%c", optopt);
            else
                rc = usage_error("unknown option %s", name);
            break;
        }
    }
    if (rc == 0 && optind < argc)
        rc = usage_error("unexpected argument '%s' (export takes options only)", argv[optind]);
    optind = 0;
    return rc;
}

/* ---- writing ------------------------------------------------------------- */

/* store_export_fn: one order, one line. */
static int write_order(void *arg, const struct store_order *o)
{
    struct export_out *out = arg;
    json_t *obj = api_order_json(o);
    if (obj == NULL)
        return STOP_NOMEM;
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    size_t need = json_dumpb(obj, out->line, out->cap, flags);
    if (need > out->cap) {
        char *bigger = realloc(out->line, need);
        if (bigger != NULL) {
            out->line = bigger;
            out->cap = need;
            need = json_dumpb(obj, out->line, out->cap, flags);
        }
    }
    json_decref(obj);
    if (need == 0 || need > out->cap)
        return STOP_NOMEM;
    if (fwrite(out->line, 1, need, out->to) != need || putc('\n', out->to) == EOF) {
        out->write_errno = errno;
        return STOP_WRITE;
    }
    out->written++;
    return 0;
}

/* Writes what stdout still buffers: true, or false with out->write_errno. */
static bool finish_output(struct export_out *out)
{
    errno = 0;
    if (fflush(out->to) == 0 && !ferror(out->to))
        return true;
    out->write_errno = errno ? errno : EIO;
    return false;
}

static int export_all(const struct config *cfg, const struct store_export_filter *f)
{
    struct store_options opts = {
        .backend = cfg->backend,
        .path = cfg->storage_path,
        .dsn = cfg->dsn,
        .durability = cfg->durability,
        .read_only = true,
    };
    struct store *s = NULL;
    if (store_open(&opts, &s) != STORE_OK)
        return 2; /* the store said why, naming the file or database */

    struct export_out out = {.to = stdout};
    int rc = store_export(s, f, write_order, &out);
    store_close(s);
    if (rc == STORE_OK && !finish_output(&out))
        rc = STOP_WRITE;
    else if (rc != STORE_OK && rc != STOP_WRITE)
        finish_output(&out); /* what was written is written; the status says it is partial */
    free(out.line);

    switch (rc) {
    case STORE_OK:
        fprintf(stderr, "exported %" PRIu64 " order%s\n", out.written, out.written == 1 ? "" : "s");
        return 0;
    case STOP_WRITE:
        log_error(NULL, "export: cannot write to stdout after %" PRIu64 " orders: %s", out.written,
                  strerror(out.write_errno));
        return 1;
    case STOP_NOMEM:
        log_error(NULL, "export: out of memory after %" PRIu64 " orders", out.written);
        return 2;
    default:
        log_error(NULL, "export: reading the orders failed after %" PRIu64 " of them: %s",
                  out.written, store_strerror(rc));
        return 2;
    }
}

int cli_export(const struct config *cfg, int argc, char **argv)
{
    struct export_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        usage(stdout);
        return 0;
    }
    /* A reader that goes away (| head) is an output error (exit 1), not a
     * signal; stdout fully buffered, in big writes. */
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOFBF, STDOUT_BUFFER);
    return export_all(cfg, &a.filter);
}
